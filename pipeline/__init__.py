"""akd pipeline: the command line and the orchestration of the stages."""
