"""Model-running helpers shared by the teacher and evaluation stages.

Token-id prompts in, token ids (and optionally the teacher's raw top-k log-probs) out,
from vLLM or transformers with the same results. Prompt templates (inference/prompts.json)
are applied here too. Imports neither stages nor pipeline.
"""
from .chat import render_prompt
from .engines import BACKENDS, compute_dtype, load_engine
from .spec import Engine, Generation, InferenceError, SamplingSpec, Scores
from .templates import PromptTemplate, TemplateError, get_template, load_templates

__all__ = ["BACKENDS", "Engine", "compute_dtype", "Generation", "InferenceError", "PromptTemplate",
           "SamplingSpec", "Scores", "TemplateError", "get_template", "load_engine", "load_templates",
           "render_prompt"]
