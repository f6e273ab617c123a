"""Grid version 3 (issue 24): target-near data first, the pruned student's recovery, the losses'
mechanism with intervals; sampled pass@1 decides. A definition on study/engine."""
