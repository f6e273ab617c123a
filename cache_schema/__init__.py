"""The contract between akd's stages: the teacher cache's schema, manifest, writer and reader.

Imports neither `stages` nor `pipeline`: both stages import this package and nothing else
of each other.
"""
from .encoding import DEFAULT_ENCODING, ENCODINGS, PAD_ID
from .errors import CacheError, CacheMismatchError, CacheVerifyError, InvalidExampleError
from .finalize import finalize_cache
from .fingerprint import tokenizer_fingerprint, tokenizer_size
from .manifest import Manifest, ShardInfo
from .progress import CacheInProgressError
from .reader import CacheReader
from .schema import FORMAT_VERSION, CachedExample, CacheRecord
from .verify import VerifyReport, verify_cache
from .writer import CacheWriter

__all__ = [
    "DEFAULT_ENCODING", "ENCODINGS", "PAD_ID", "FORMAT_VERSION",
    "CacheError", "CacheMismatchError", "CacheVerifyError", "CacheInProgressError", "InvalidExampleError",
    "CacheWriter", "CacheReader", "CachedExample", "CacheRecord", "Manifest", "ShardInfo",
    "finalize_cache", "verify_cache", "VerifyReport", "tokenizer_fingerprint", "tokenizer_size",
]
