"""The two commands that serve until Ctrl-C: ``attr2gender serve`` (REST scoring, MLflow's routes behind a
body cap) and ``attr2gender demo`` (the Gradio page). Their parsers and handlers; ``cli.py`` adds them to the
one command line and applies its error policy (an ``Attr2GenderError`` is one ``error:`` line, exit 2)."""

# Lazy imports: each command imports what it runs (uvicorn, MLflow, Gradio, torch) after the arguments are
# parsed, so --help stays instant.

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from .cli_args import port_number, positive_int, shown
from .constants import DEMO_MAX_PIXELS
from .errors import UsageError
from .tracking.serving import MAX_BODY_MB


def add_server_parsers(sub) -> None:
    """``serve`` and ``demo`` on the command line's subparsers."""
    p = sub.add_parser(
        "serve",
        help="serve the shipped model, a bundle or an MLflow model over REST (MLflow's /invocations)",
        description="Serve a model on MLflow's scoring routes (POST /invocations, GET /ping, /version) with "
        "the formats of `mlflow models serve`, plus a request-body cap, a JSON depth limit and error answers "
        "without the server's stack trace. Binds to 127.0.0.1 unless --host says otherwise.",
        epilog="exit status: 2 on a usage error (an unreadable bundle or model, a bad option); otherwise it "
        "serves until Ctrl-C.",
    )
    p.add_argument(
        "model",
        nargs="?",
        metavar="BUNDLE|MODEL_URI",
        help="a bundle folder, an MLflow model (runs:/<run_id>/model, models:/..., a saved model folder); "
        "default: the shipped two-stage model",
    )
    p.add_argument(
        "--pretrained",
        choices=("two-stage", "direct"),
        help="which shipped model to serve when no model is given (default two-stage)",
    )
    _add_server_arguments(p, port=5001)
    p.add_argument(
        "--max-body-mb",
        type=positive_int,
        default=MAX_BODY_MB,
        help=f"refuse request bodies over this many MB with 413 (default {MAX_BODY_MB})",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "demo",
        help="a local web page: drop a photo, see why, edit the concepts (needs the [demo] extra)",
        description="Open a local web page (Gradio) on one model, or two side by side: drop a photo, pick a "
        "face, see P(Male) and the 39 concepts with their push on the decision, set a concept and see the "
        "decision follow; a Folder tab gives predict's table as CSV. Binds to 127.0.0.1 unless --host says "
        "otherwise.",
        epilog="exit status: 2 on a usage error (an unreadable bundle, Gradio missing, a bad option or port); "
        "otherwise it serves until Ctrl-C.",
    )
    p.add_argument(
        "bundles",
        nargs="*",
        type=Path,
        metavar="BUNDLE",
        help="one or two bundle folders written by pipeline.save() (default: the shipped two-stage model)",
    )
    p.add_argument(
        "--pretrained",
        nargs="+",
        choices=("two-stage", "direct"),
        default=[],
        help="shipped models to show (after any bundles), e.g. --pretrained two-stage direct",
    )
    _add_server_arguments(p, port=7860)
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEMO_MAX_PIXELS,
        help=f"refuse photos with more pixels than this (default {DEMO_MAX_PIXELS:,})",
    )
    p.set_defaults(func=_demo)


def _serve(args) -> int:
    if args.model is not None and args.pretrained is not None:
        raise UsageError("give a model or --pretrained, not both (--pretrained picks a shipped model)")
    import uvicorn

    from .tracking.serving import build_app, check_port_free, load_served_model

    cap_mb = args.max_body_mb
    check_port_free(args.host, args.port)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="attr2gender-serve-") as workdir:
        model = load_served_model(args.model, route=args.pretrained, workdir=workdir)
        what = args.model or f"the shipped {(args.pretrained or 'two-stage')} model"
        shown_host = _warn_if_reachable(
            args.host, "can score images and read the server's image files by path"
        )
        print(
            f"serving {what} at http://{shown_host}:{args.port}/invocations (POST JSON, request bodies up to "
            f"{cap_mb} MB); Ctrl-C stops",
            flush=True,
        )
        uvicorn.run(
            build_app(model, max_body_bytes=cap_mb * 2**20),
            host=args.host,
            port=args.port,
            log_level="warning",
        )
    return 0


def _demo(args) -> int:
    # (bundle folder, None) or (None, shipped route), in the order given
    wanted = [(bundle, None) for bundle in args.bundles] + [(None, route) for route in args.pretrained]
    wanted = wanted or [(None, "two-stage")]
    if len(wanted) > 2:
        raise UsageError(f"the page shows one or two models side by side; got {len(wanted)}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError(
            "the demo page needs Gradio: pip install 'attr2gender[demo]' (in a checkout: pip install -e \".[demo]\")"
        ) from None
    from .demo.page import build_page
    from .demo.session import load_demo_model
    from .tracking.serving import check_port_free

    check_port_free(args.host, args.port)
    for bundle in args.bundles:
        if not bundle.is_dir():
            raise UsageError(
                f"{shown(bundle)}: no such bundle folder; give a folder written by pipeline.save()"
            )
    started = time.perf_counter()
    models = [load_demo_model(source, route) for source, route in wanted]
    for model in models:
        for line in model.warnings:
            print(f"warning: {line}", file=sys.stderr)
    shown_host = _warn_if_reachable(
        args.host, "can use the page, and its Folder tab reads folders on this machine"
    )
    page = build_page(models, max_pixels=args.max_pixels)
    page.queue(default_concurrency_limit=1)  # one photo at a time: the CPU is the limit, not the requests
    page.launch(
        server_name=args.host,
        server_port=args.port,
        inbrowser=False,
        quiet=True,
        show_error=False,
        max_file_size="50mb",
        prevent_thread_lock=True,
        footer_links=[],
    )
    print(
        f"demo of {' and '.join(m.name for m in models)}: open http://{shown_host}:{args.port}/ in a browser "
        f"(ready in {time.perf_counter() - started:.1f} s); Ctrl-C stops",
        flush=True,
    )
    try:
        page.block_thread()
    finally:
        page.close()
    return 0


def _add_server_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=port_number, default=port, help=f"TCP port (default {port})")


def _warn_if_reachable(host: str, exposes: str) -> str:
    """One warning line when ``host`` is reachable from other machines; the host as a URL writes it."""
    from .tracking.serving import LOCAL_HOSTS

    if host not in LOCAL_HOSTS:
        print(
            f"warning: serving on {host}, reachable from other machines, with no authentication; anyone who "
            f"can reach the port {exposes}",
            file=sys.stderr,
        )
    return f"[{host}]" if ":" in host else host
