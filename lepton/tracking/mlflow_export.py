"""`lepton export-tracking RUN... --mlflow URI`: push finished runs to a user's MLflow tracking server.

Each Lepton run becomes one MLflow run (tag `lepton.run_id`) with its resolved config as params, every metric
row the store holds (key "<split>/<name>", at its step and time), the final summary as "final/..." metrics, and
report.json, config.yaml and the model folder as artefacts. A run already exported to that experiment is
skipped, or replaced with `replace`. mlflow-skinny is an optional extra: the base install does not need it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from lepton.errors import LeptonError, RunError
from lepton.jobs.status import Status

BATCH_METRICS = 1000  # MLflow's log_batch limits: 1,000 metrics and 100 params a call
BATCH_PARAMS = 100
MAX_PARAM_CHARS = 6000
ENDED = {Status.finished.value: "FINISHED", Status.failed.value: "FAILED", Status.cancelled.value: "KILLED",
         Status.interrupted.value: "KILLED"}


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise LeptonError("MLflow export needs the optional extra: `pip install 'lepton[mlflow]'` "
                          "(or `make extras`)") from None
    # MLflow retries an unreachable server for about a minute by default; a user waiting on a command wants the
    # error sooner. Their own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 refuses a file store unless asked: naming one on the command line is asking.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Beside the database for a sqlite store; MLflow's own default is ./mlruns in whatever folder the command ran."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).expanduser().resolve().parent / "mlartifacts" / experiment).as_uri()
    return None  # a server or a file store decides for itself


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def export_runs(refs: list[str], uri: str, experiment: str = "lepton", replace: bool = False,
                progress: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    from lepton.jobs.store import get_store

    store = get_store()
    runs = [store.find_run(r) for r in refs]  # every reference checked before anything is sent
    for run in runs:
        if run["status"] not in ENDED:
            raise RunError(f"run {run['id']} is {run['status']}: export it once it has ended")
    client = _client(uri)
    try:
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment, _artifact_location(uri, experiment))
        return [_export_one(client, exp_id, store, run, replace, progress) for run in runs]
    except MlflowException as e:
        raise LeptonError(f"the export to MLflow at {uri} failed: {e.message}") from None
    except OSError as e:  # an unreachable server, an unwritable file store
        raise LeptonError(f"could not write to MLflow at {uri}: {e}") from None


def _export_one(client, exp_id: str, store, run: dict, replace: bool, progress) -> dict[str, Any]:
    from mlflow.entities import Metric, Param

    old = client.search_runs([exp_id], filter_string=f"tags.`lepton.run_id` = '{run['id']}'")
    if old and not replace:
        progress(f"{run['id']}: already exported as MLflow run {old[0].info.run_id}; skipped (--replace sends it again)")
        return {"run_id": run["id"], "mlflow_run_id": old[0].info.run_id, "skipped": True}
    for o in old:
        client.delete_run(o.info.run_id)
    run_dir = Path(run["run_dir"])
    ml = client.create_run(exp_id, run_name=run.get("name") or run["id"],
                           tags={"lepton.run_id": run["id"], "lepton.dataset": str(run.get("dataset") or ""),
                                 "mlflow.source.name": "lepton"})
    mid = ml.info.run_id
    params = [Param(k, (v if isinstance(v, str) else json.dumps(v, default=str))[:MAX_PARAM_CHARS])
              for k, v in sorted((run.get("config") or {}).items())]
    for chunk in _chunks(params, BATCH_PARAMS):
        client.log_batch(mid, params=chunk)
    rows = store.metrics(run["id"])
    metrics = [Metric(f"{r['split']}/{r['name']}", float(r["value"]), int((r["time"] or 0) * 1000), int(r["step"] or 0))
               for r in rows if r["value"] is not None]
    summary = (run.get("result") or {}).get("metrics") or {}
    metrics += [Metric(f"final/{k}", float(v), int((run.get("finished") or 0) * 1000), 0) for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for chunk in _chunks(metrics, BATCH_METRICS):
        client.log_batch(mid, metrics=chunk)
    for name in ("report.json", "config.yaml"):
        if (run_dir / name).is_file():
            client.log_artifact(mid, str(run_dir / name))
    if (run_dir / "model").is_dir():
        client.log_artifacts(mid, str(run_dir / "model"), artifact_path="model")
    client.set_terminated(mid, status=ENDED[run["status"]], end_time=int((run.get("finished") or 0) * 1000) or None)
    progress(f"{run['id']}: {len(params)} params, {len(metrics)} metric points, artefacts sent as MLflow run {mid}")
    return {"run_id": run["id"], "mlflow_run_id": mid, "experiment_id": exp_id, "metrics": len(metrics),
            "params": len(params)}
