"""process_results of the project's lm-eval tasks: the `correctness` reward on each generation, greedy exact match
of the first generation, and unbiased pass@k over the n generations of a document (a multiple-choice document's
`#### B` by the letter, as the reward grades it)."""

from harness.trial.evaluate import score_generations


def process_results(doc: dict, results: list) -> dict[str, float]:
    """`results` holds the document's generations (the take_first_k filter nests them in one list)."""
    generations = results[0] if results and isinstance(results[0], list) else results
    return score_generations(doc["answer"], generations)
