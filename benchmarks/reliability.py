"""Run the reliability battery and write its table into docs/reliability.md.

    python benchmarks/reliability.py            # run, print the table, rewrite the docs table
    python benchmarks/reliability.py --check    # run, print; exit 1 when a case fails

Every case of tests/test_battery_*.py, tests/test_kill_sample.py, tests/test_train_kill.py and
tests/test_properties.py is run through pytest; the table lists each with the root cause of issue
10 it covers (see docs/reliability.md), what was tried, and how it ended.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
FILES = [
    "tests/test_battery_cli.py",
    "tests/test_battery_images.py",
    "tests/test_battery_features.py",
    "tests/test_kill_sample.py",
    "tests/test_train_kill.py",
    "tests/test_properties.py",
]
#: test function -> (root cause, what is tried)
CASES = {
    "test_bad_config_is_one_line_before_any_folder": ("2 config values", "train --config with"),
    "test_a_plugins_own_declarations_are_enforced": (
        "2 config values", "a plugin's declared range; a plugin key of the wrong kind"),
    "test_config_path_problems": ("2 config values", "missing config file, a folder as config"),
    "test_markup_in_a_path_is_printed_as_written": ("1 markup", "--out a[/x]/[bold]run, sample b[/y]"),
    "test_out_under_a_file_or_a_file": ("3 --out", "--out under a file / is a file"),
    "test_out_in_a_read_only_folder": ("3 --out", "--out in a read-only folder (skipped as root)"),
    "test_out_holding_other_files_or_orphan_checkpoints": (
        "4 run folders", "--out with foreign files / checkpoints but no latest.json"),
    "test_existing_run_is_refused_and_left_identical": ("4 run folders", "train --out an existing run"),
    "test_damaged_run_folder_is_one_line_for_sample_and_resume": (
        "4 run folders", "damaged run folder, for sample and train --resume"),
    "test_truncated_training_state_is_one_line_on_resume": ("4 run folders", "state.pt truncated to"),
    "test_bad_sampling_option_is_one_line": ("6 sampling options", "sample"),
    "test_sample_out_that_is_a_file_fails_before_sampling": ("3 --out", "sample --out a file / under one"),
    "test_non_finite_samples_are_refused_before_writing": (
        "7 half-written", "a sampler that diverges to NaN (writes nothing)"),
    "test_default_output_folder_gets_a_fresh_name": ("8 replacement", "sample twice, default folder"),
    "test_explicit_out_holding_files_is_refused_then_overwritten": (
        "8 replacement", "sample --out a full folder, then --overwrite"),
    "test_overwrite_never_empties_a_run_folder": ("8 replacement", "sample --out RUN --overwrite"),
    "test_fresh_file_numbers_a_taken_name": ("8 replacement", "evaluate report name taken"),
    "test_walk_skips_and_names_every_hostile_entry": (
        "5 data folders", "self.png -> self.png, broken link, FIFO .png, sub/up -> .."),
    "test_undecodable_image_is_an_error_or_skipped_with_skip_bad": (
        "5 data folders", "undecodable .png, without and with skip_bad"),
    "test_unreadable_subfolder_is_counted": ("5 data folders", "unreadable subfolder (skipped as root)"),
    "test_guarded_reader": ("6 sampling options", "FIFO / missing / bomb image as --mask"),
    "test_writer_leaves_no_partial_file_under_a_final_name": (
        "7 half-written", "writer dies inside its second PNG"),
    "test_cli_data_folder_battery": ("5 data folders", "train --data hostile folder, then --skip-bad"),
    "test_cli_resolution_out_of_range": ("2 config values", "images data.resolution = 100000"),
    "test_cli_inpaint_inputs": ("6 sampling options", "sample --inpaint with bomb / FIFO / bad masks"),
    "test_cli_evaluate_never_replaces_a_report": (
        "8 replacement", "evaluate twice with the same settings; --guidance nan; missing --features"),
    "test_pt2_payload_never_runs": ("9 unpickling", "evaluate --features .pt2 with a pickle payload in"),
    "test_not_an_archive": ("9 unpickling", "--features junk.pt2"),
    "test_sigkill_during_sample_leaves_only_whole_files": (
        "7 half-written", "SIGKILL polydiff sample inside writes and at random moments"),
    "test_sigkill_anywhere_and_resume_loses_nothing": (
        "7 half-written", "SIGKILL training mid-step, inside each checkpoint file, after commit"),
    "test_check_value_agrees_with_the_declaration": ("2 config values", "hypothesis: any value, any key"),
    "test_config_problem_names_the_key_of_a_bad_value": ("2 config values", "hypothesis: a config with one bad key"),
    "test_walker_returns_only_regular_accepted_files_and_terminates": (
        "5 data folders", "hypothesis: random trees of files, folders, FIFOs, links, loops"),
    "test_samplers_keep_shape_dtype_mask_and_finiteness": (
        "6 sampling options", "hypothesis: samplers x shapes x masks x dtypes"),
    "test_samplers_refuse_a_mask_of_another_shape": ("6 sampling options", "hypothesis: mask of another shape"),
}


class Collect:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, float]] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call" and not (report.skipped and report.when == "setup"):
            return
        func, _, params = report.nodeid.split("::")[-1].partition("[")
        cause, tried = CASES.get(func, ("?", func))
        if params:
            tried = f"{tried} `{params[:-1]}`"
        outcome = "as promised" if report.passed else ("skipped" if report.skipped else "FAILED")
        self.rows.append((cause, tried, func, outcome, report.duration))


def table(rows) -> str:
    lines = ["| root cause | what was tried | test | outcome | s |", "| --- | --- | --- | --- | --- |"]
    for cause, tried, func, outcome, seconds in sorted(rows, key=lambda r: r[0]):
        lines.append(f"| {cause} | {tried.replace('|', '/')} | `{func}` | {outcome} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import pytest

    collect = Collect()
    t0 = time.time()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *[str(ROOT / f) for f in FILES]],
                       plugins=[collect])
    text = table(collect.rows)
    failed = sum(r[3] == "FAILED" for r in collect.rows)
    summary = (f"{len(collect.rows)} cases, {failed} failed, "
               f"{sum(r[3] == 'skipped' for r in collect.rows)} skipped, {time.time() - t0:.0f} s "
               f"(python benchmarks/reliability.py, {time.strftime('%Y-%m-%d')})\n")
    print(text + "\n" + summary)
    if "--check" not in argv:
        doc = DOC.read_text(encoding="utf-8")
        head, sep, rest = doc.partition(START)
        _, sep2, tail = rest.partition(END)
        if not sep or not sep2:
            print(f"{DOC}: markers {START} / {END} missing", file=sys.stderr)
            return 2
        DOC.write_text(f"{head}{START}\n{summary}\n{text}{END}{tail}", encoding="utf-8")
    return 1 if failed or code not in (0, 5) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
