"""Errors of the cache contract: each names the file, row or field at fault."""


class CacheError(Exception):
    """Base class for every cache problem a user can fix."""


class InvalidExampleError(CacheError):
    """An example handed to the writer breaks the contract (NaN, unsorted top-k, bad id...)."""


class CacheMismatchError(CacheError):
    """An existing cache was made with another teacher, tokenizer, k, template or dataset."""


class CacheVerifyError(CacheError):
    """A shard on disk disagrees with the manifest (checksum, schema, counts, missing)."""
