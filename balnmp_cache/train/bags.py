"""Bags of patches: random M x N sampling per patient, evaluation bags, official-bag replay, batching.

A patient's patches are rows of the in-memory feature matrix (several slides of one patient are
pooled). :class:`PatientRows` holds them in CSR form. A :class:`BagSet` is a set of bags, each a
row of ``N`` feature-row indices (``-1`` = padding) belonging to one patient.

Sampling is vectorised over all patients: one random key per row, one ``lexsort`` by (patient,
key) gives an independent permutation of every patient's rows, which is cut into disjoint bags of
``N`` like the official data (``M = floor(n / N)`` bags, the 0..N-1 leftover patches unused). A
patient with fewer than ``N`` patches gets one padded bag holding all of them. With a fixed ``M``
larger than ``floor(n / N)``, further bags come from fresh permutations, so bags are disjoint within
each permutation and every bag holds distinct patches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from balnmp_cache.errors import CacheError, CohortError

__all__ = [
    "EVAL_SEED",
    "BagSet",
    "EpochBags",
    "PatientRows",
    "epoch_rng",
    "eval_bags",
    "iter_batches",
    "official_bag_set",
    "sample_bags",
]

EVAL_SEED = 20_211_210
"""Seed of the evaluation bags (with the patient id): identical across epochs, runs, seeds and patient sets."""

_PAD = -1


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator of one epoch: a function of (seed, epoch, stream) only."""
    return np.random.default_rng([seed % (1 << 63), epoch, stream])


@dataclass(frozen=True)
class PatientRows:
    """Each patient's feature rows, CSR style.

    Attributes:
        index: (R,) int64 feature-row indices, grouped by patient.
        offsets: (P + 1,) int64; patient ``p`` owns ``index[offsets[p]:offsets[p + 1]]``.
    """

    index: np.ndarray
    offsets: np.ndarray

    @property
    def n_patients(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """(P,) patches per patient."""
        return np.diff(self.offsets)

    def rows(self, patient: int) -> np.ndarray:
        return self.index[self.offsets[patient] : self.offsets[patient + 1]]

    @classmethod
    def from_lists(cls, rows: Sequence[np.ndarray]) -> PatientRows:
        counts = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        index = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
        return cls(index=index, offsets=offsets)


@dataclass(frozen=True)
class BagSet:
    """A set of bags.

    Attributes:
        rows: (B, N) int64 feature rows, ``-1`` on padded positions (always at the end of a bag).
        patient: (B,) int64 patient index of each bag.
        bag: (B,) int64 number of the bag within its patient (0, 1, ...).
    """

    rows: np.ndarray
    patient: np.ndarray
    bag: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """(B, N) bool, True on real patches."""
        return self.rows >= 0

    def bags_per_patient(self, n_patients: int) -> np.ndarray:
        """(P,) number of bags of each patient."""
        return np.bincount(self.patient, minlength=n_patients)

    def take(self, order: np.ndarray) -> BagSet:
        return BagSet(rows=self.rows[order], patient=self.patient[order], bag=self.bag[order])

    def select(self, patients: np.ndarray) -> BagSet:
        """The bags of the given patient indices (order kept)."""
        keep = np.isin(self.patient, patients)
        return self.take(np.flatnonzero(keep))


def _permuted(pr: PatientRows, patients: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated random permutations of the rows of ``patients`` -> (rows, starts)."""
    counts = pr.counts[patients]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    owner = np.repeat(np.arange(len(patients)), counts)
    gather = np.repeat(pr.offsets[patients] - starts, counts) + np.arange(int(counts.sum()))
    source = pr.index[gather]
    order = np.lexsort((rng.random(len(source)), owner))
    return source[order], starts


def _cut(
    perm: np.ndarray, starts: np.ndarray, counts: np.ndarray, owner: np.ndarray, slot: np.ndarray, n: int
) -> np.ndarray:
    """Bag ``i`` takes positions ``starts[owner[i]] + slot[i] * n + (0..n-1)`` of ``perm``.

    Positions past the end of the patient's rows are padding (``-1``).
    """
    offsets = np.arange(n, dtype=np.int64)
    local = slot[:, None] * n + offsets[None, :]  # (B, N) position within the patient's permutation
    valid = local < counts[owner][:, None]
    pos = np.where(valid, starts[owner][:, None] + local, 0)
    return np.where(valid, perm[pos], _PAD).astype(np.int64)  # (B, N)


def sample_bags(
    pr: PatientRows,
    patients: np.ndarray,
    *,
    bag_size: int,
    bags_per_patient: int | None,
    rng: np.random.Generator,
) -> BagSet:
    """Draw bags for ``patients`` (indices into ``pr``), grouped by patient in the given order.

    Args:
        pr: every patient's feature rows.
        patients: (S,) patient indices; each must have at least one patch.
        bag_size: N, patches per bag.
        bags_per_patient: M; ``None`` = ``max(1, floor(n / N))`` per patient.
        rng: the generator (e.g. :func:`epoch_rng`).

    Returns:
        A :class:`BagSet`; bags of one patient are disjoint within each permutation, a patient with
        fewer than N patches gets bags holding all of its patches followed by padding.
    """
    patients = np.asarray(patients, dtype=np.int64)
    counts = pr.counts[patients]
    if np.any(counts == 0):
        raise ValueError("sample_bags got a patient without patches")
    per_perm = np.maximum(counts // bag_size, 1)  # disjoint bags one permutation yields
    wanted = per_perm if bags_per_patient is None else np.full(len(patients), int(bags_per_patient), dtype=np.int64)
    rounds = -(-wanted // per_perm)  # permutations each patient needs
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (local patient, bag number, rows)
    for r in range(int(rounds.max()) if len(rounds) else 0):
        active = np.flatnonzero(rounds > r)
        perm, starts = _permuted(pr, patients[active], rng)
        n_here = np.minimum(per_perm[active], wanted[active] - r * per_perm[active])  # bags from this round
        owner = np.repeat(np.arange(len(active)), n_here)
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(n_here) - n_here, n_here)
        rows = _cut(perm, starts, counts[active], owner, slot, bag_size)
        pieces.append((active[owner], r * per_perm[active][owner] + slot, rows))
    if not pieces:
        return BagSet(np.zeros((0, bag_size), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    local = np.concatenate([p[0] for p in pieces])
    number = np.concatenate([p[1] for p in pieces])
    rows = np.concatenate([p[2] for p in pieces])
    order = np.lexsort((number, local))  # group by patient, bags in order
    return BagSet(rows=rows[order], patient=patients[local[order]], bag=number[order].astype(np.int64))


def official_bag_set(
    patient_ids: Sequence[str],
    bags: Mapping[str, list[list[str]]],
    key_to_row: Mapping[str, int],
    *,
    source: str,
) -> BagSet:
    """Replay the official fixed bags: each bag's patch keys are looked up in the cache.

    Args:
        patient_ids: the patients, in data order (index = patient index).
        bags: patient id -> list of bags, each a list of patch keys (``patches/<pid>/<file>.jpg``).
        key_to_row: patch key -> feature row.
        source: where the bags came from, for messages.

    Raises:
        CohortError: a patient has no official bags.
        CacheError: patch keys are not in the cache (the first ones are listed).
    """
    missing_patients = [pid for pid in patient_ids if not bags.get(pid)]
    if missing_patients:
        raise CohortError(
            f"{len(missing_patients)} patient(s) of the task have no bags in {source}: "
            f"{', '.join(missing_patients[:20])}; use bags = 'random' or the official JSON of the same task"
        )
    width = max(len(b) for pid in patient_ids for b in bags[pid])
    rows: list[list[int]] = []
    owner: list[int] = []
    number: list[int] = []
    missing: list[str] = []
    n_missing = 0
    for p, pid in enumerate(patient_ids):
        for j, bag in enumerate(bags[pid]):
            found = []
            for key in bag:
                row = key_to_row.get(key)
                if row is None:
                    n_missing += 1
                    if len(missing) < 10:
                        missing.append(key)
                else:
                    found.append(row)
            rows.append(found + [_PAD] * (width - len(found)))
            owner.append(p)
            number.append(j)
    if n_missing:
        raise CacheError(
            f"{n_missing} patch key(s) of the official bags in {source} are not in the cache, e.g. "
            f"{', '.join(missing)}; extract the BCNB patches with their official keys (patches/<pid>/...) "
            "or use bags = 'random'"
        )
    return BagSet(
        rows=np.asarray(rows, dtype=np.int64).reshape(len(rows), width),
        patient=np.asarray(owner, dtype=np.int64),
        bag=np.asarray(number, dtype=np.int64),
    )


def eval_bags(pr: PatientRows, patient_ids: Sequence[str], *, bag_size: int) -> BagSet:
    """The fixed evaluation bags: ``max(1, floor(n / N))`` disjoint bags per patient, all patients.

    Each patient's bags are drawn with a generator of (:data:`EVAL_SEED`, the patient id) only, so they
    do not depend on the seed, the epoch or which other patients are present: ``predict`` on any
    subset of patients reproduces the bags (and probabilities) of training.
    """
    import zlib

    counts = pr.counts
    per_patient = np.maximum(counts // bag_size, 1)
    rows = np.full((int(per_patient.sum()), bag_size), _PAD, dtype=np.int64)
    owner = np.repeat(np.arange(pr.n_patients), per_patient)
    number = np.arange(len(owner)) - np.repeat(np.cumsum(per_patient) - per_patient, per_patient)
    start = 0
    for p, pid in enumerate(patient_ids):
        rng = np.random.default_rng([EVAL_SEED, zlib.crc32(pid.encode("utf-8"))])
        mine = pr.rows(p)[rng.permutation(int(counts[p]))]
        m = int(per_patient[p])
        if counts[p] >= bag_size:
            rows[start : start + m] = mine[: m * bag_size].reshape(m, bag_size)  # (M, N)
        else:
            rows[start, : counts[p]] = mine
        start += m
    return BagSet(rows=rows, patient=owner.astype(np.int64), bag=number.astype(np.int64))


def iter_batches(bags: BagSet, batch_bags: int, *, rng: np.random.Generator | None = None) -> Iterator[BagSet]:
    """Yield ``batch_bags`` bags at a time, shuffled with ``rng`` (in order when ``None``).

    Each batch is trimmed to its longest bag, so a batch without padded bags has no padding.
    """
    order = rng.permutation(len(bags)) if rng is not None else np.arange(len(bags))
    for start in range(0, len(order), batch_bags):
        batch = bags.take(order[start : start + batch_bags])
        width = int((batch.rows >= 0).sum(axis=1).max()) if len(batch) else 0
        if width < batch.rows.shape[1]:
            batch = BagSet(rows=batch.rows[:, :width], patient=batch.patient, bag=batch.bag)
        yield batch


@dataclass(frozen=True)
class EpochBags:
    """The training bags of every epoch and their batches.

    Bags are drawn anew each epoch with a generator of (seed, epoch), and shuffled into batches
    with a generator of (seed, epoch, 1); with ``fixed`` bags (the official replay) every epoch
    uses those, shuffled the same way.

    Attributes:
        rows: every patient's feature rows.
        patients: (S,) the training patients.
        bag_size: N, patches per bag.
        bags_per_patient: M; ``None`` = ``max(1, floor(n / N))`` per patient.
        batch_bags: B, bags per batch.
        seed: the training seed.
        fixed: the fixed training bags, or ``None`` (random bags).
    """

    rows: PatientRows
    patients: np.ndarray
    bag_size: int
    bags_per_patient: int | None
    batch_bags: int
    seed: int
    fixed: BagSet | None = None

    def draw(self, epoch: int) -> BagSet:
        """The training bags of ``epoch`` (1-based), grouped by patient."""
        if self.fixed is not None:
            return self.fixed
        return sample_bags(self.rows, self.patients, bag_size=self.bag_size, bags_per_patient=self.bags_per_patient,
                           rng=epoch_rng(self.seed, epoch, 0))

    def batches(self, bags: BagSet, epoch: int) -> Iterator[BagSet]:
        """``bags`` of ``epoch`` in shuffled batches of B."""
        return iter_batches(bags, self.batch_bags, rng=epoch_rng(self.seed, epoch, 1))
