"""The prediction tasks, numbered as the official code numbers them (``run.sh ${k}``).

Class index 1 is always the positive / "higher" class of a binary task, so the binary score is
``p_1``; task 2 orders its classes N0, N+(1-2), N+(>2) (balnmp.md §1.5–1.6).
"""

from __future__ import annotations

from dataclasses import dataclass

from balnmp_cache.errors import ConfigError

__all__ = ["ALN_STATUSES", "TASKS", "TaskSpec", "get_task", "normalise_aln_status"]

ALN_STATUSES: tuple[str, ...] = ("N0", "N+(1-2)", "N+(>2)")


@dataclass(frozen=True)
class TaskSpec:
    """One task: which ALN statuses take part and the class index of each.

    Attributes:
        task: the official task number (0-4).
        name: a human-readable name, as in the paper's tables.
        classes: class names in label order.
        status_to_label: ALN status -> class index; statuses not listed are not part of the task.
    """

    task: int
    name: str
    classes: tuple[str, ...]
    status_to_label: dict[str, int]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def is_binary(self) -> bool:
        return self.n_classes == 2


TASKS: dict[int, TaskSpec] = {
    0: TaskSpec(0, "N0 vs N(+)", ("N0", "N(+)"), {"N0": 0, "N+(1-2)": 1, "N+(>2)": 1}),
    1: TaskSpec(1, "N+(1-2) vs N+(>2)", ("N+(1-2)", "N+(>2)"), {"N+(1-2)": 0, "N+(>2)": 1}),
    2: TaskSpec(2, "N0 vs N+(1-2) vs N+(>2)", ("N0", "N+(1-2)", "N+(>2)"), {"N0": 0, "N+(1-2)": 1, "N+(>2)": 2}),
    3: TaskSpec(3, "N0 vs N+(1-2)", ("N0", "N+(1-2)"), {"N0": 0, "N+(1-2)": 1}),
    4: TaskSpec(4, "N0 vs N+(>2)", ("N0", "N+(>2)"), {"N0": 0, "N+(>2)": 1}),
}


def get_task(task: int) -> TaskSpec:
    """Return the spec of an official task number, or raise a ConfigError listing the valid ones."""
    try:
        return TASKS[int(task)]
    except (KeyError, ValueError, TypeError) as err:
        choices = ", ".join(f"{k} ({spec.name})" for k, spec in TASKS.items())
        raise ConfigError(f"unknown task {task!r}; valid tasks (--task / key 'task') are: {choices}") from err


_STATUS_ALIASES = {
    "n0": "N0",
    "n+(1-2)": "N+(1-2)",
    "n+(1~2)": "N+(1-2)",
    "n+(>2)": "N+(>2)",
    "n+(\uff1e2)": "N+(>2)",  # U+FF1E FULLWIDTH GREATER-THAN SIGN, a spelling of ">" that some sheets use
    "n+(≥3)": "N+(>2)",
    "n+(>=3)": "N+(>2)",
}


def normalise_aln_status(value: object) -> str | None:
    """Map the spellings of an ALN status found in BCNB-like tables to ``N0``/``N+(1-2)``/``N+(>2)``.

    Returns ``None`` for a value that is not an ALN status (the caller reports the row).
    """
    if value is None:
        return None
    key = str(value).strip().replace(" ", "").lower()
    return _STATUS_ALIASES.get(key)
