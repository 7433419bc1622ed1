"""The clinical cohort: patient table, tasks, splits and clinical encoding."""

from balnmp_cache.cohort.clinical import OFFICIAL_CLINICAL as OFFICIAL_CLINICAL
from balnmp_cache.cohort.clinical import ClinicalEncoder as ClinicalEncoder
from balnmp_cache.cohort.clinical import fit_clinical as fit_clinical
from balnmp_cache.cohort.splits import OfficialBags as OfficialBags
from balnmp_cache.cohort.splits import kfold_splits as kfold_splits
from balnmp_cache.cohort.splits import load_official_bags as load_official_bags
from balnmp_cache.cohort.splits import resolve_splits as resolve_splits
from balnmp_cache.cohort.table import BCNB_COLUMNS as BCNB_COLUMNS
from balnmp_cache.cohort.table import Cohort as Cohort
from balnmp_cache.cohort.table import load_cohort as load_cohort
from balnmp_cache.cohort.tasks import ALN_STATUSES as ALN_STATUSES
from balnmp_cache.cohort.tasks import TASKS as TASKS
from balnmp_cache.cohort.tasks import TaskSpec as TaskSpec
from balnmp_cache.cohort.tasks import get_task as get_task
