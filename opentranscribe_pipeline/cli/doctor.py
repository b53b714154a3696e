"""``opentranscribe doctor``: one line per check of this machine (:mod:`..doctor`); exit 0
only when every check passes."""

from __future__ import annotations

from .common import EXIT_OK, EXIT_RUN_FAILED, add_verbose


def cmd_doctor(args) -> int:
    """One line per check; exit 0 only when every check passes. The warehouse is handed to
    the checks (unset: ``OPENTRANSCRIBE_WAREHOUSE``, else ``./warehouse``)."""
    from ..doctor import run_checks

    checks = run_checks(args.warehouse, device=args.device, compute_type=args.compute_type, batch_size=args.batch_size)
    for check in checks:
        print(check.line(), flush=True)
    failed = [c.name for c in checks if not c.ok]
    print(
        f"{len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return EXIT_OK if not failed else EXIT_RUN_FAILED


def add_doctor_command(sub) -> None:
    d = sub.add_parser("doctor", help="check this machine: packages, models, device, instance, storage, search, pool")
    d.add_argument("--warehouse", help="warehouse to check (default OPENTRANSCRIBE_WAREHOUSE, else ./warehouse)")
    d.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    d.add_argument(
        "--compute-type", dest="compute_type", default="default", help="default: float16 on CUDA, int8 on CPU"
    )
    d.add_argument("--batch-size", dest="batch_size", type=int, default=8, help="ASR batch size to check (default 8)")
    add_verbose(d)
    d.set_defaults(func=cmd_doctor)
