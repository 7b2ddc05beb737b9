"""One loader per published benchmark set (HumanEval, HumanEval-X, MultiPL-E, MXEval, McEval) and the
HumanEval-derived summarization task: each reads its offline file into `Problem`s. Runs during `evaluate`."""
