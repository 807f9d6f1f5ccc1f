"""`python -m jinstruct serve`: the embedded backend as a real OpenAI-compatible HTTP server (uvicorn)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from jinstruct.llm.backend import create_app
    from jinstruct.llm.tinymodel import resolve_model

    try:
        model_dir = Path(resolve_model(args.model))
        app = create_app(model_dir, served_model_name=args.served_model_name)
    except (OSError, ValueError) as e:
        print(f"error: cannot serve {args.model}: {e}", file=sys.stderr)
        return 2
    print(f"serving {model_dir} as {app.state.engine.served_name} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve a local Hugging Face chat model over an OpenAI-compatible API")
    p.add_argument("--model", required=True,
                   help="a Hugging Face model directory, or 'tiny' / 'tiny:<variant>' for the project's tiny model")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: only this machine)")
    p.add_argument("--served-model-name", help="the model id replies carry (default: the directory's name)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve)
