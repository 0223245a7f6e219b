"""``vvctl doctor``: which inference providers really start here, why the others do not, where the engine cache is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:
    from vvctl.ops.doctor import DoctorReport


def _human(console: Console, report: DoctorReport) -> None:
    cuda = f", built for CUDA {report.cuda_build}" if report.cuda_build else ""
    console.print(f"{report.package} {report.onnxruntime}{cuda}", markup=False)
    console.print(f"TensorRT: {report.tensorrt or 'not found'}", markup=False)
    if report.gpus:
        for gpu in report.gpus:
            console.print(f"GPU {gpu.index}: {gpu.name} (compute capability {gpu.sm})", markup=False)
    else:
        console.print(f"GPU: none usable: {report.gpu_problem}", markup=False)
    table = copyable_table(
        "provider", "configured", "starts", "why not", title="execution providers", title_justify="left"
    )
    for check in report.providers:
        table.add_row(
            check.name, "yes" if check.configured else "no", "yes" if check.starts else "NO", check.reason or ""
        )
    console.print(table)
    note = f" ({report.precision_note})" if report.precision_note else ""
    console.print(f"TensorRT precision: {report.precision}{note}", markup=False)
    cache = report.engine_cache
    state = (
        f"{cache.engines} engine(s), {cache.size_bytes / 1e6:.1f} MB, mode {cache.mode}"
        if cache.exists
        else "not created yet"
    )
    console.print(f"engine cache: {cache.path} ({state})", markup=False)
    if report.would_use is None:
        console.print(f"none of the configured providers ({', '.join(report.configured)}) can start", markup=False)
    else:
        console.print(f"orchestrate will run on {report.would_use}", markup=False)


def command(ctx: typer.Context) -> None:
    """Show which ONNX Runtime execution providers this installation can really start (a one-node model is
    run on each), why the others cannot (missing shared libraries by name, no GPU), the GPUs, the TensorRT
    version and precision, and where the TensorRT engine cache is. Exit 0 when the first configured provider
    starts (or, without a GPU, a later one), 1 when a GPU is here but inference would fall back, 7 when
    none of the configured providers can start."""
    from vvctl.ops.doctor import doctor

    state = get_state(ctx)
    report = doctor(state.settings().settings)
    emit(state, report, "doctor", _human)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))
