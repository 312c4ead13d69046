"""Deep-sky objects in smart-telescope images: plate solve, name what is in the field, say what is visible.

Catalogue data: OpenNGC (Mattia Verga et al., CC-BY-SA-4.0) through pyongc (MIT).
"""

from skysift.dso.catalog import OPENNGC_CREDIT, load_openngc, lookup, objects_in_field
from skysift.dso.pipeline import DsoResult, analyse_image, run_dso
from skysift.dso.solve import FieldSolution, solve_image, write_wcs_files
from skysift.dso.visibility import SNR_MARGINAL, SNR_VISIBLE, measure_visibility, remove_stars

__all__ = [
    "OPENNGC_CREDIT",
    "SNR_MARGINAL",
    "SNR_VISIBLE",
    "DsoResult",
    "FieldSolution",
    "analyse_image",
    "load_openngc",
    "lookup",
    "measure_visibility",
    "objects_in_field",
    "remove_stars",
    "run_dso",
    "solve_image",
    "write_wcs_files",
]
