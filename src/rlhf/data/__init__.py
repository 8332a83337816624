"""Records of shared/formats.md, their readers and writers, ranking -> pairs and pairwise agreement."""

from rlhf.data.files import iter_records, read_records, write_records
from rlhf.data.rankings import pair_agreement, ranking_pairs
from rlhf.data.records import CATEGORIES, FLAGS, FieldError, RecordError

__all__ = [
    "CATEGORIES", "FLAGS", "FieldError", "RecordError",
    "iter_records", "read_records", "write_records", "ranking_pairs", "pair_agreement",
]
