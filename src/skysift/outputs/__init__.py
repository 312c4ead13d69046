"""Outputs: tables, JSON, plots, written atomically."""

from skysift.outputs.files import atomic_path, ensure_out_dir, write_json, write_table

__all__ = ["atomic_path", "ensure_out_dir", "write_json", "write_table"]
