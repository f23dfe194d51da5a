"""The study as optuna-dashboard serves it (curves, attributes, notes, artifacts), the static report,
the dashboard's CLI errors, and a dashboard polling a SQLite file that a search is writing to."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.dashboard import server as dashboard
from search.model.best import export_best
from search.model.retrain import RetrainOptions
from search.store.artifacts import DEFAULT_ARTIFACTS, artifact_dir
from search.store.notes import study_note
from search.store.storage import open_storage
from search.store.study import create_or_resume
from search.tune.pruners import make_pruner
from search.tune.runner import run_search
from search.tune.samplers import make_sampler
from search.tune.session import SearchOptions
from space import build_model, count_macs, count_parameters, preset_config, summary_markdown
from tests.support import fsearch, tiny_options, write_tiny_dataset

PNG = b"\x89PNG\r\n\x1a\n"
RECORDED = {"parameters", "macs", "flops", "images_per_second", "train_seconds", "wall_seconds", "device"}


def _opts(data_dir: Path, storage: str, **kw: Any) -> SearchOptions:
    """With the confusion-matrix artifacts the dashboard serves."""
    return tiny_options(data_dir, storage, **({"artifacts": True} | kw))


@dataclass(frozen=True)
class Searched:
    storage: str
    root: Path
    exported: int  # the trial export-best retrained
    responses: list[tuple[int, str]]  # (status, start of the body) of each dashboard request during it all


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Searched:
    """A tiny study (two trials) whose best trial was exported, while a live dashboard polled the same
    SQLite file and saved notes into it."""
    root = tmp_path_factory.mktemp("study")
    data_dir = write_tiny_dataset(root / "data")
    storage = f"sqlite:///{root / 'fsearch.db'}"
    rdb = open_storage(storage, create=True)
    create_or_resume(rdb, "tiny", sampler=make_sampler("random", seed=0), pruner=make_pruner("none", max_resource=2))
    optuna.create_study(storage=rdb, study_name="scratch")  # a study the 'browser' writes notes to
    server = dashboard.listen(dashboard.make_app(storage), host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    responses: list[tuple[int, str]] = []
    poller = threading.Thread(target=_poll, args=(dashboard.base_url(server, "127.0.0.1"), stop, responses))
    poller.start()
    try:
        run_search(_opts(data_dir, storage))
        opts = RetrainOptions(out=root / "best", data_dir=data_dir, device="cpu", verify_data=False)
        export_best(study="tiny", storage=storage, opts=opts, epochs=1)
    finally:
        stop.set()
        poller.join(timeout=60)
        server.shutdown()
        server.server_close()
    best = optuna.load_study(study_name="tiny", storage=storage).best_trial
    return Searched(storage=storage, root=root, exported=best.number, responses=responses)


def _poll(base: str, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    """What a browser on the dashboard does, as fast as it can: read the study, now and then save a note."""
    version = 0
    for i in range(5000):  # bounded; ends when the search and the export do
        if stop.is_set():
            return
        request: str | urllib.request.Request = f"{base}/api/studies/1?after=0"
        if i % 5 == 4:  # a write racing the search's writes
            version += 1
            data = json.dumps({"version": version, "body": f"note {version}"}).encode()
            request = urllib.request.Request(f"{base}/api/studies/2/note", data=data, method="PUT",
                                             headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                seen.append((response.status, response.read(200).decode(errors="replace")))
        except urllib.error.HTTPError as exc:
            seen.append((exc.code, exc.read().decode(errors="replace")))
        time.sleep(0.005)


def _get(app: Any, path: str) -> tuple[str, bytes]:
    """One GET through the dashboard's WSGI app, in process."""
    environ: dict[str, Any] = {"PATH_INFO": path.split("?")[0], "QUERY_STRING": path.partition("?")[2]}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def _study_json(app: Any) -> dict[str, Any]:
    status, body = _get(app, "/api/studies/1?after=0")
    assert status.startswith("200"), body[:300]
    return json.loads(body)  # type: ignore[no-any-return]


def test_the_artifact_store_sits_beside_the_sqlite_file() -> None:
    assert artifact_dir("sqlite:///studies/fsearch.db") == Path("studies/artifacts")
    assert artifact_dir("sqlite:////abs/x/s.db") == Path("/abs/x/artifacts")
    assert artifact_dir("postgresql://u:p@host/db") == DEFAULT_ARTIFACTS
    assert artifact_dir("postgresql://u:p@host/db", Path("elsewhere")) == Path("elsewhere")


def test_the_architecture_summary_adds_up_to_the_recorded_counts() -> None:
    arch = preset_config("lenet5").arch
    model = build_model(arch)
    text = summary_markdown(model, arch, title="LeNet-5")
    assert text.startswith("### LeNet-5\n")
    assert f"**{count_parameters(model):,} parameters" in text and "61,706" in text
    assert f"**{count_macs(model, arch):,}** |" in text  # the MACs total is count_macs
    assert "| Conv2d 1→6, 5x5, pad 2 | 6x28x28 | 156 | 117,600 |" in text
    assert "| Linear 84→10 | 10 | 850 | 840 |" in text


def test_every_trial_shows_its_curve_attributes_note_and_validation_confusion_matrix(
    searched: Searched,
) -> None:
    storage = searched.storage
    app = dashboard.make_app(storage)
    study = _study_json(app)
    assert study["name"] == "tiny" and study["has_intermediate_values"]
    done = [t for t in study["trials"] if t["state"] == "Complete"]
    assert len(done) == 2
    for t in done:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert set(attrs) >= RECORDED, attrs
        batch = int(next(p["param_external_value"] for p in t["params"] if p["name"] == "batch_size"))
        # The learning curve: two reports an epoch when it has two steps (200 images).
        reports = 2 if batch <= 100 else 1
        assert [v["step"] for v in t["intermediate_values"]] == list(range(1, reports + 1))
        note = t["note"]["body"]
        assert note.startswith(f"### Trial {t['number']}: architecture") and f"{int(attrs['parameters']):,}" in note
        [artifact] = t["artifacts"]
        assert artifact["filename"] == "val_confusion_matrix.png" and artifact["mimetype"] == "image/png"
        status, body = _get(app, f"/artifacts/1/{t['trial_id']}/{artifact['artifact_id']}")
        assert status.startswith("200") and body.startswith(PNG)
    assert "## Search: tiny" in study["note"]["body"] and "| trials | 2: 2 complete, 0 pruned" in study["note"]["body"]
    assert study["objective_names"] == ["validation accuracy"]  # the plots' axis label, not "Objective 0"


def test_the_export_is_in_the_study_artifacts_and_its_note_beside_the_references(
    searched: Searched,
) -> None:
    storage, root, number = searched.storage, searched.root, searched.exported
    app = dashboard.make_app(storage)
    study = _study_json(app)
    names = {a["filename"]: a for a in study["artifacts"]}
    shown = ("test_confusion_matrix.png", "training_curves.png", "metrics.json", "model.safetensors", "config.json")
    assert set(names) == {f"trial-{number}-{name}" for name in shown}
    status, body = _get(app, f"/artifacts/1/{names[f'trial-{number}-model.safetensors']['artifact_id']}")
    assert status.startswith("200") and body == (root / "best" / "model.safetensors").read_bytes()
    note = study["note"]["body"]
    accuracy = json.loads((root / "best" / "metrics.json").read_text())["accuracy"]
    assert f"## Exported model: trial {number}" in note and f"**test accuracy {accuracy:.4f}**" in note
    for line in (
        "| LeNet-5 (61,706 parameters) | 89.70% |",
        "| 3-conv CNN 32/64/128 | 91.40% |",
        "| 2-conv CNN (1.6M parameters) | 93.04% |",
        "| Google AutoML Vision (24 compute hours) | 93.90% |",
    ):
        assert line in note  # fmt: skip
    assert note.index("## Search: tiny") < note.index("## Exported model")  # the search summary stays


def test_report_writes_the_plots_as_html_and_png(
    searched: Searched, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    storage = searched.storage
    args = ["report", "--study", "tiny", "--storage", storage, "--out", str(tmp_path / "r"), "--json"]
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    plots = ("optimization_history", "param_importances", "intermediate_values", "parallel_coordinate")
    assert report["skipped"] == {}
    assert set(report["files"]) == {"index.html", "plotly.min.js"} | {
        f"{p}.{e}" for p in plots for e in ("html", "png")
    }
    for plot in plots:
        assert (tmp_path / "r" / f"{plot}.png").read_bytes().startswith(PNG)
        assert 'src="plotly.min.js"' in (tmp_path / "r" / f"{plot}.html").read_text()
    index = (tmp_path / "r" / "index.html").read_text()
    assert all(f'<img src="{p}.png"' in index for p in plots) and "## Search: tiny" in index
    # An output folder that cannot be made (a file in its path) is one line, not a traceback.
    (tmp_path / "a-file").write_text("")
    args[args.index("--out") + 1] = str(tmp_path / "a-file" / "r")
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith(f"Error: cannot create the output folder {tmp_path}/a-file/r (")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_errors_are_one_line(
    searched: Searched, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = searched.storage
    code, _, err = fsearch(["dashboard", "--storage", "sqlite:///nowhere.db"], capsys, monkeypatch)
    assert (code, err.strip()) == (
        2,
        "Error: no study database at nowhere.db; run 'fsearch run' first or pass --storage",
    )
    code, _, err = fsearch(["dashboard", "--storage", storage, "--study", "other"], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == (
        f"Error: study 'other' not found in {storage} (studies there: tiny, scratch); "
        "run 'fsearch run --study other' first"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = fsearch(["dashboard", "--storage", storage, "--port", str(port)], capsys, monkeypatch)
    assert (code, err.strip()) == (
        2, f"Error: port {port} on 127.0.0.1 is in use; pass another --port (0 picks a free one)",
    )  # fmt: skip


def test_ctrl_c_stops_the_dashboard_and_a_public_host_is_warned_about(
    searched: Searched, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = searched.storage

    def serve_then_ctrl_c(app: Any, *, host: str, port: int, on_ready: Any) -> None:
        on_ready(f"http://{host}:{port}")
        raise KeyboardInterrupt

    monkeypatch.setattr(dashboard, "serve", serve_then_ctrl_c)
    args = ["dashboard", "--storage", storage, "--study", "tiny", "--host", "0.0.0.0", "--port", "8123"]
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 130 and "Traceback" not in err
    assert out.strip() == f"optuna-dashboard on {storage}: http://0.0.0.0:8123/dashboard/studies/1"
    assert "Warning: the dashboard has no authentication" in err and err.strip().endswith("Dashboard stopped.")
    code, out, err = fsearch([*args[:-4], "--port", "8123"], capsys, monkeypatch)
    assert code == 130 and "Warning" not in err and "http://127.0.0.1:8123/dashboard/studies/1" in out


def test_a_search_and_a_polling_dashboard_share_the_sqlite_file_without_lock_errors(searched: Searched) -> None:
    assert len(searched.responses) > 20, "the dashboard was hardly polled"
    failed = [r for r in searched.responses if r[0] >= 300 or "locked" in r[1].lower()]  # 200 read, 204 note
    assert not failed, failed[:3]
    assert sum(r[0] == 204 for r in searched.responses) > 3  # notes were written meanwhile
    study = _study_json(dashboard.make_app(searched.storage))
    states = [t["state"] for t in study["trials"]]
    assert states.count("Complete") == 2 and set(states) <= {"Complete", "Pruned"}  # pruned: over-budget draws
    assert not [t for t in study["trials"] if any(a["key"] == "fail_reason" for a in t["user_attrs"])]


def test_the_study_note_counts_what_pruning_saved() -> None:
    study = optuna.create_study(study_name="notes", direction="maximize")
    x = {"x": FloatDistribution(0, 2)}
    attrs = {"max_epochs": 5, "device": "cpu (2 threads)", "parameters": 1000, "macs": 2_000_000}
    done = attrs | {"epochs_run": 5, "train_seconds": 100.0}
    study.add_trial(create_trial(value=0.9, params={"x": 1.0}, distributions=x, user_attrs=done))
    for ran in (0.5, 2):  # stopped at half an epoch and at two of five: 4.5 + 3 epochs saved
        stopped = attrs | {"epochs_run": ran, "train_seconds": 20.0 * ran}
        study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.5}, distributions=x, user_attrs=stopped))
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={"over_budget": True}))  # a skipped draw
    note = study_note(study)
    assert "| trials | 3: 1 complete, 2 pruned, 0 failed, 0 running (1 over-budget draws skipped) |" in note
    best = "| best | screen trial 0 (sampled): validation accuracy **0.9000**, 1,000 parameters, 2.00 M MACs, 5 epochs"
    assert best in note
    # 7.5 epochs at 20 s each = 150 s saved of the 50 + 150 s those two trials would have cost.
    assert "stopped 2 trials early, saving 7.5 epochs, ≈ 2.5 min of training (75% of what" in note
    assert "| device | cpu (2 threads) |" in note and "## Exported model" not in note


def test_the_report_marks_queued_presets_draws_curves_by_epoch_and_names_the_best_few(tmp_path: Path) -> None:
    from search.dashboard.report import NAMED_CURVES, named_curves, write_report

    study = optuna.create_study(direction="maximize")
    for n in range(12):  # two reports an epoch; trial 0 was queued by hand and is not among the best
        curve = {step: 0.5 + 0.01 * n + 0.02 * step for step in (1, 2, 3, 4)}
        attrs = {"reports_per_epoch": 2} | ({"preset": "fsearch-w1"} if n == 0 else {})
        study.add_trial(
            create_trial(
                value=curve[4], params={"x": n / 12}, distributions={"x": FloatDistribution(0, 1)},
                user_attrs=attrs, intermediate_values=curve,
            )
        )  # fmt: skip
    written = write_report(study, tmp_path)
    assert written.skipped == {}
    assert named_curves(study) == {0, *range(12 - NAMED_CURVES, 12)}  # a legend of 6 lines, not 12
    history = (tmp_path / "optimization_history.html").read_text()
    assert '"name":"queued by hand (preset)"' in history and '"text":["fsearch-w1"]' in history
    curves = (tmp_path / "intermediate_values.html").read_text()
    assert '"x":[0.5,1.0,1.5,2.0]' in curves and '"title":{"text":"epoch"}' in curves
    for plot in ("optimization_history", "intermediate_values"):
        assert (tmp_path / f"{plot}.png").read_bytes().startswith(PNG)
