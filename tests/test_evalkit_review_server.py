"""Expert review against a real Label Studio server: export, two annotators through the API,
import (from the server and from an export file), report, with the numbers checked by hand and
against the krippendorff package and scipy.  Also: reruns add nothing twice, the API key never
lands in a file or an output, a personal access token works, and faults (connection refused for
real, 5xx injected after the server stored an import) neither lose nor duplicate work."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import krippendorff
import numpy as np
import pytest
from click.testing import CliRunner
from label_studio_sdk import LabelStudio
from scipy.stats import spearmanr

from evalkit.cli import main
from evalkit.review.client import LabelStudioClient
from evalkit.review.export import export_run, item_key
from evalkit.rubric import label_config, load_rubric
from ls_server import label_studio, ls_template, user_tokens  # noqa: F401 (fixtures)
from review_data import run_items, write_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
MEDICAL = ROOT / "rubrics" / "medical.yaml"

# What two doctors said (accuracy 1-5, safety, overall 0-10).  B rated 10 of the 14 items, left
# "overall" blank on two (a partial annotation), and skipped en-001.
A_ACC = {"med-001": 4, "med-002": 5, "med-003": 1, "med-004": 5, "med-005": 3, "med-006": 1, "med-007": 5,
         "med-008": 4, "cmmlu-001": 5, "cmmlu-002": 5, "cmmlu-003": 1, "cmmlu-004": 5, "en-001": 5, "en-002": 1}
B_ACC = {"med-001": 4, "med-002": 4, "med-003": 1, "med-004": 5, "med-005": 3, "med-006": 2, "med-007": 4,
         "med-008": 4, "cmmlu-003": 1, "en-002": 2}
A_SAFETY = {k: "harmful" if k in ("med-003", "med-006") else "caution" if k == "en-002" else "safe" for k in A_ACC}
B_SAFETY = {k: "harmful" if k == "med-003" else "caution" if k in ("med-005", "med-006") else "safe" for k in B_ACC}
B_NO_OVERALL = {"med-002", "med-007"}


def _result(acc, safety, overall=None, comment=None):
    res = [{"from_name": "accuracy", "to_name": "answer", "type": "rating", "value": {"rating": acc}},
           {"from_name": "safety", "to_name": "answer", "type": "choices", "value": {"choices": [safety]}}]
    if overall is not None:
        res.append({"from_name": "overall", "to_name": "answer", "type": "number", "value": {"number": overall}})
    if comment:
        res.append({"from_name": "comment", "to_name": "answer", "type": "textarea", "value": {"text": [comment]}})
    return res


def _tasks(sdk: LabelStudio, project_id: int) -> list:
    return list(sdk.tasks.list(project=project_id, fields="all", page_size=100))


def _files_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def test_export_annotate_import_report(label_studio, tmp_path, monkeypatch):
    (owner, owner_key), (second, second_key) = user_tokens(label_studio)
    run = write_run(tmp_path / "run")
    runner = CliRunner()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", owner_key)
    res = runner.invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), "--url", label_studio.url])
    assert res.exit_code == 0, res.output
    assert "14 tasks added, 0 already there" in res.output
    manifest = json.loads((run / "review" / "export.json").read_text())
    pid = manifest["project"]["id"]

    sdk_a = LabelStudio(base_url=label_studio.url, api_key=owner_key)
    sdk_b = LabelStudio(base_url=label_studio.url, api_key=second_key)
    project = sdk_a.projects.get(id=pid)
    assert project.label_config.strip() == label_config(load_rubric(MEDICAL)).strip()
    assert project.maximum_annotations == 2
    tasks = _tasks(sdk_a, pid)
    assert len(tasks) == 14
    by_item = {t.data["item_id"]: t for t in tasks}
    assert set(by_item) == {i["id"] for i in run_items()}
    pred = by_item["med-003"].predictions[0]
    assert pred.model_version == "evalkit-auto" and "Screening score" in pred.result[0]["value"]["text"][0]
    assert "BLEU 1.7" in by_item["med-003"].data["auto_scores"]
    med3 = next(i for i in run_items() if i["id"] == "med-003")    # BLEU/chrF on 0-100, the rest 0-1
    assert pred.score == pytest.approx((med3["bleu"] / 100 + med3["chrf"] / 100 + med3["rouge1"] + med3["rouge2"]
                                        + med3["rougeL"] + med3["em"]) / 6, abs=1e-4)

    # A rerun adds nothing; a rerun with a smaller sample drops nothing.
    res = runner.invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), "--url", label_studio.url,
                               "--sample", "5"])
    assert res.exit_code == 0, res.output
    assert "0 tasks added, 14 already there" in res.output
    assert len(_tasks(sdk_a, pid)) == 14

    # Two doctors annotate through the API, each with their own token.
    for item_id, acc in A_ACC.items():
        comment = "把小三阳说成痊愈是错误的，会延误随访" if item_id == "med-003" else None
        sdk_a.annotations.create(id=by_item[item_id].id, result=_result(acc, A_SAFETY[item_id], acc * 2, comment))
    for item_id, acc in B_ACC.items():
        overall = None if item_id in B_NO_OVERALL else acc * 2 - 1
        sdk_b.annotations.create(id=by_item[item_id].id, result=_result(acc, B_SAFETY[item_id], overall))
    sdk_b.annotations.create(id=by_item["en-001"].id, result=[], was_cancelled=True)
    assert {a.completed_by for a in sdk_a.annotations.list(id=by_item["med-003"].id)} == {1, 2}

    res = runner.invoke(main, ["review", "import", str(run), "--url", label_studio.url])
    assert res.exit_code == 0, res.output
    assert "24 annotations on 14 items by 2 annotators" in res.output and "cancelled 1" in res.output
    rows = [json.loads(x) for x in (run / "review" / "annotations.jsonl").read_text().splitlines()]
    assert {r["annotator"] for r in rows} == {owner, second}
    partial = [r for r in rows if r["annotator"] == second and r["item_id"] in B_NO_OVERALL]
    assert partial and all("overall" not in r["values"] and r["values"]["accuracy"] for r in partial)

    res = runner.invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    report = json.loads((run / "report.json").read_text())

    # Hand-computed: per-item means of accuracy sum to 50 over 14 items.
    acc = report["human"]["accuracy"]
    assert acc["n"] == 14 and acc["n_ratings"] == 24
    assert acc["mean"] == pytest.approx(50 / 14, abs=1e-4)
    assert acc["ci_low"] < acc["mean"] < acc["ci_high"] and 1 <= acc["ci_low"] and acc["ci_high"] <= 5
    # safety scores harmful 0, caution 1, safe 2; per-item means by hand: 0, 0.5, 1.5 (med-005),
    # 1.5 (en-002), 2 for the other 10 items -> (0 + 0.5 + 1.5 + 1.5 + 20) / 14
    assert report["human"]["safety"]["mean"] == pytest.approx(23.5 / 14, abs=1e-4)
    assert report["human"]["overall"]["n_ratings"] == 22
    assert report["human"]["referral"]["n"] == 0

    # Cohen's kappa on the 10 items both rated, by hand: po = 6/10, pe = .08+.01+.08+.03 = .20
    pair = report["agreement"]["accuracy"]["cohen_kappa"][f"{owner} | {second}"]
    assert pair["n"] == 10 and pair["kappa"] == pytest.approx(0.5, abs=1e-4)
    # Krippendorff's alpha against the reference implementation
    ids = sorted(A_ACC)
    matrix = np.array([[A_ACC[i] for i in ids], [B_ACC.get(i, np.nan) for i in ids]], dtype=float)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert report["agreement"]["accuracy"]["krippendorff_alpha"] == pytest.approx(expected, abs=1e-4)
    # Spearman of ROUGE-L with the experts' accuracy, against scipy
    items = {i["id"]: i for i in run_items()}
    with_rouge = [i for i in ids if "rougeL" in items[i]]
    means = [(A_ACC[i] + B_ACC[i]) / 2 if i in B_ACC else A_ACC[i] for i in with_rouge]
    rho = spearmanr([items[i]["rougeL"] for i in with_rouge], means).statistic
    assert report["correlation"]["rougeL"]["accuracy"] == pytest.approx(rho, abs=1e-4)
    assert report["correlation_n"]["rougeL"]["accuracy"] == 10
    # The worst machine/expert disagreement is listed with the doctor's comment.
    assert report["disagreements"] and abs(report["disagreements"][0]["disagreement"]) >= \
        abs(report["disagreements"][-1]["disagreement"])
    med3 = next(r for r in report["items"] if r["id"] == "med-003")
    assert med3["comments"][0]["text"].startswith("把小三阳")
    html = (run / "report.html").read_text()
    assert "医学准确性" in html and "Krippendorff" in html and "med-003" in html

    # The offline path gives the same annotations: Label Studio's own JSON export file, imported.
    online = (run / "review" / "annotations.jsonl").read_text()
    export_file = tmp_path / "project-export.json"
    export_file.write_bytes(b"".join(sdk_a.projects.exports.download_sync(pid, export_type="JSON",
                                                                            download_all_tasks=True)))
    res = runner.invoke(main, ["review", "import", str(run), "--file", str(export_file)])
    assert res.exit_code == 0, res.output
    offline = [json.loads(x) for x in (run / "review" / "annotations.jsonl").read_text().splitlines()]
    # a file names annotators by user id; the server import by email: compare everything else
    strip = lambda rows: sorted((r["key"], r["annotation"], json.dumps(r["values"], sort_keys=True)) for r in rows)  # noqa: E731
    assert strip(offline) == strip(json.loads(x) for x in online.splitlines())

    # The key is nowhere: not in any file of the run, not in any output.
    for key in (owner_key, second_key):
        assert key not in _files_text(run)
        assert key not in res.output


def test_personal_access_token_and_bad_key(label_studio, tmp_path):
    (_, owner_key), _ = user_tokens(label_studio)
    pat = LabelStudio(base_url=label_studio.url, api_key=owner_key).tokens.create().token
    assert pat.count(".") == 2                      # a JWT refresh token, not a legacy token
    run = write_run(tmp_path / "run", run_items()[:4])
    res = CliRunner().invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), "--url",
                                    label_studio.url, "--api-key", pat, "--title", "PAT test"])
    assert res.exit_code == 0, res.output
    assert "4 tasks added" in res.output
    res = CliRunner().invoke(main, ["review", "import", str(run), "--url", label_studio.url, "--api-key", pat])
    assert res.exit_code == 0, res.output
    assert pat not in _files_text(run) and pat not in res.output

    wrong = "0123456789abcdef0123456789abcdef01234567"
    res = CliRunner().invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), "--url",
                                    label_studio.url, "--api-key", wrong])
    assert res.exit_code == 1 and "HTTP 401" in res.output and "API key" in res.output
    assert wrong not in res.output and "Traceback" not in res.output


class FlakyTransport(httpx.HTTPTransport):
    """A real connection to the server, with 5xx answers injected on task imports: ``before``
    fails the request without sending it; ``after`` sends it (the server stores the tasks) and
    then answers 502 as a proxy would."""

    def __init__(self, before: int = 0, after: int = 0):
        super().__init__()
        self.before, self.after, self.imports = before, after, 0

    def handle_request(self, request):
        if request.method == "POST" and request.url.path.endswith("/import"):
            self.imports += 1
            if self.before:
                self.before -= 1
                return httpx.Response(503, json={"detail": "injected: service unavailable"}, request=request)
            if self.after:
                self.after -= 1
                super().handle_request(request).close()
                return httpx.Response(502, text="injected: bad gateway", request=request)
        return super().handle_request(request)


def test_5xx_neither_loses_nor_duplicates(label_studio, tmp_path):
    (_, owner_key), _ = user_tokens(label_studio)
    run = write_run(tmp_path / "run")
    transport = FlakyTransport(before=1, after=1)
    client = LabelStudioClient(label_studio.url, owner_key, transport=transport, backoff=0.05)
    m = export_run(run, MEDICAL, client=client, title="5xx test", batch_size=5)
    assert transport.imports >= 4                       # the faults really happened
    sdk = LabelStudio(base_url=label_studio.url, api_key=owner_key)
    keys = [t.data["key"] for t in _tasks(sdk, m["project"]["id"])]
    assert sorted(keys) == sorted(item_key(i) for i in run_items())     # each exactly once
    assert m["project"]["added"] == 14 and m["project"]["duplicates_removed"] == 0

    # A duplicate that got in anyway (say, a timed-out import the server finished later) is removed.
    task = json.loads((run / "review" / "tasks.json").read_text())[0]
    sdk.projects.import_tasks(m["project"]["id"], request=[task])
    m = export_run(run, MEDICAL, client=LabelStudioClient(label_studio.url, owner_key))
    assert m["project"]["duplicates_removed"] == 1
    assert len(_tasks(sdk, m["project"]["id"])) == 14


# Chromium's background services call Google; on a closed network each try is refused (python.md).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def test_labeling_page_renders_the_rubric(label_studio, tmp_path):
    """Log in through the form as a reviewer would, open an item, see every rubric dimension."""
    from playwright.sync_api import sync_playwright

    info = json.loads((label_studio.data_dir / "evalkit-template.json").read_text())
    (owner, owner_key), _ = user_tokens(label_studio)
    run = write_run(tmp_path / "run")
    m = export_run(run, MEDICAL, client=LabelStudioClient(label_studio.url, owner_key), title="browser test")
    pid = m["project"]["id"]
    sdk = LabelStudio(base_url=label_studio.url, api_key=owner_key)
    tid = next(t.id for t in _tasks(sdk, pid) if t.data["item_id"] == "med-003")
    rubric = load_rubric(MEDICAL)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200}, locale="zh-CN")
            page.goto(f"{label_studio.url}/user/login/")
            page.fill("input[name=email]", owner)
            page.fill("input[name=password]", info["password"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
            page.goto(f"{label_studio.url}/projects/{pid}/data?tab=1&task={tid}")
            for dim in rubric["dimensions"]:
                page.get_by_text(f"{dim['label']['zh']} · {dim['label']['en']}", exact=True).first.wait_for(timeout=90_000)
            page.get_by_text("乙肝小三阳需要吃药吗？肝功能正常。").first.wait_for()        # the item itself
            stars = page.locator(".ant-rate, [class*=rating]").count()
            # every option of a choice dimension is a radio button (choice="single-radio")
            options = [f"{o['label']['zh']} · {o['label']['en']}" for d in rubric["dimensions"]
                       if d["type"] == "choice" for o in d["options"]]
            radios = [page.locator("label", has_text=text).locator("input[type=radio]").count() for text in options]
            page.wait_for_timeout(1000)                  # let fonts and layout settle for the picture
            page.screenshot(path=str(artifacts / "review-labeling-page.png"), full_page=True)
        finally:
            browser.close()
    assert stars >= 3                                    # accuracy, completeness, clarity
    assert len(radios) == 6 and all(n >= 1 for n in radios), radios     # safety 3 + referral 3
    assert (artifacts / "review-labeling-page.png").stat().st_size > 50_000
