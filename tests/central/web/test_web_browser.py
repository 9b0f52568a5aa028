"""The web faces in a real Chromium (Debian ``chromium`` + ``chromium-driver``, selenium) against the real
service (uvicorn), a real mosquitto, the real consumer and the real edge outbox + relay."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from anqi_contract.event import FaceInfo, MediaRef, ViolationEvent, ViolationType
from central_sync.consumer import CentralConsumer
from central_sync.identity import EnrolmentRecord
from central_sync.persons import enrol_embeddings
from central_sync.storage.models import Disposition, Task
from central_sync.storage.store import CentralStore
from central_sync.web import auth

pytest.importorskip("selenium")
if not shutil.which("chromium") or not shutil.which("chromedriver"):
    pytest.skip("Debian chromium + chromium-driver not installed (scripts/setup.sh)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from central_sync.config import CentralConfig, parse_config  # noqa: E402


def central_cfg(tmp: Path, port: int, **extra: Any) -> CentralConfig:
    return parse_config(
        {
            "database": {"url": f"sqlite:///{tmp / 'central.db'}"},
            "mqtt": {"port": port, "client_id": f"c-{uuid.uuid4().hex[:6]}"},
            "media": {"dir": str(tmp / "media")},
            **extra,
        },
        "test",
        tmp,
    )


def face(seed: int, noise: float = 0.0, rng_seed: int = 0) -> FaceInfo:
    base = np.random.default_rng(seed).normal(size=128)
    v = base + noise * np.random.default_rng(rng_seed).normal(size=128)
    v /= np.linalg.norm(v)
    return FaceInfo(found=True, quality=0.8, size_px=64, embedding_model="sface", embedding=v.tolist())


def start_edge_relay(
    root: Path, port: int, relay_config: Any, passes: Any = None, **kw: Any
) -> tuple[Any, Any]:
    """The edge side: the real outbox and MQTT relay (its heartbeat carrying ``passes``, a PassCounter)."""
    from edge.health import Health
    from edge.relay import MqttRelay, Outbox

    cfg = relay_config(root, port, **kw)
    health = Health(root / "health.json", cfg.device.device_id)
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir, health)
    info = (lambda: {"passes": passes.snapshot()}) if passes is not None else None
    return outbox, MqttRelay(cfg.relay, cfg.device, outbox, health, heartbeat_info=info).start()


PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def evidence(tmp: Path, seed: int, point: str = "point-1") -> tuple[ViolationEvent, dict[str, Path]]:
    """An event of now with a real JPEG deciding frame and a real 1 s H.264 clip."""
    eid = uuid.uuid4()
    d = tmp / f"ev-{eid}"
    d.mkdir(parents=True)
    img = np.full((720, 1280, 3), 40, np.uint8)
    cv2.rectangle(img, (400, 160), (720, 640), (0, 0, 255), 3)
    cv2.imwrite(str(d / "violation.jpg"), img)
    # the edge's preview.jpg: the deciding frame with every face blurred, at most 640 wide (the cockpit's picture)
    cv2.imwrite(str(d / "preview.jpg"), cv2.resize(img, (640, 360)))
    cv2.imwrite(str(d / "face.jpg"), np.full((96, 80, 3), 120, np.uint8))
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-t",
            "1",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-movflags",
            "+faststart",
            str(d / "clip.mp4"),
        ],
        check=True,
    )
    files = {
        "violation.jpg": d / "violation.jpg",
        "preview.jpg": d / "preview.jpg",
        "clip.mp4": d / "clip.mp4",
        "face.jpg": d / "face.jpg",
    }
    refs = [
        MediaRef(
            name=n,
            kind="clip" if n.endswith(".mp4") else "face" if n.startswith("face") else "context",
            content_type="video/mp4" if n.endswith(".mp4") else "image/jpeg",
            size=p.stat().st_size,
            sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for n, p in files.items()
    ]
    ev = ViolationEvent(
        event_id=eid,
        device_id="anqi-dev-0001",
        site_id="huzhou-demo",
        point_id=point,
        violation_type=ViolationType.no_helmet,
        time=datetime.now(timezone.utc),
        track_id=seed,
        confidence=0.9,
        face=face(42, 0.2, seed),
        media=refs,
    )
    return ev, files


def assert_no_overlap(drv: Any, selector: str) -> None:
    rects = drv.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e=>{const r=e.getBoundingClientRect();"
        "return [r.left,r.top,r.right,r.bottom,e.scrollWidth<=e.clientWidth+1]})",
        selector,
    )
    assert len(rects) >= 2
    for i, a in enumerate(rects):
        assert a[4], f"{selector}[{i}] overflows horizontally"
        assert a[2] <= drv.execute_script("return window.innerWidth") + 1, (
            f"{selector}[{i}] past the right edge"
        )
        for b in rects[i + 1 :]:
            inter = min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
            assert not inter, f"{selector}: {a} overlaps {b}"


def assert_cjk_rendered(drv: Any) -> None:
    # a CJK font is installed and the page's Chinese text is drawn with it (not tofu boxes)
    assert drv.execute_script("return document.fonts.check('20px \"WenQuanYi Micro Hei\"', '安骑')")
    widths = drv.execute_script(
        "const c=document.createElement('canvas').getContext('2d');c.font='20px \"WenQuanYi Micro Hei\"';"
        "return ['安','骑','驾','\\uffff'].map(t=>c.measureText(t).width)"
    )
    assert widths[0] > 15 and widths[1] > 15 and widths[2] > 15


@pytest.fixture
def browser() -> Any:
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or ""
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
    ):
        opts.add_argument(a)
    drv = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    yield drv
    drv.quit()


def test_cockpit_console_and_rider_in_chromium(
    tmp_path: Path, broker: Any, relay_config: Any, browser: Any
) -> None:
    import uvicorn

    from central_sync.sharing.http import create_app

    out = Path(__file__).parent / "screenshots"
    out.mkdir(exist_ok=True)
    (tmp_path / "central").mkdir()
    port = free_port()
    cfg = central_cfg(tmp_path / "central", broker.port, api={"port": port})
    store = CentralStore.from_config(cfg)
    cons = CentralConsumer(cfg, store=store, media_grace_s=1.0)
    enrol_embeddings(
        store,
        cfg,
        cons.resolver,
        EnrolmentRecord("P-001", name="张三", id_number="33050119900101123X", community="飞英社区"),
        np.asarray(face(42).embedding)[None, :],
    )
    cons.start()
    app = create_app(cfg, store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    from edge.passes import PassCounter

    passes = PassCounter("point-1", 300)  # what the edge pipeline counts: 8 riders, 2 violators (1 no helmet)
    for k in range(8):
        passes.seen_in_zone(k, datetime.now(timezone.utc))
    passes.violated(0, "no_helmet")
    passes.violated(1, "wrong_way")
    outbox, relay = start_edge_relay(
        tmp_path / "edge", broker.port, relay_config, passes=passes, media_chunk_kb=64
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for i in range(2):
            outbox.add(*evidence(tmp_path / "edge", i))
        assert relay.wait_drained(30)
        kiosk = auth.create_kiosk_token(store, "big-screen")
        auth.add_user(store, "admin", PASSWORD, "admin")
        while not server.started:
            time.sleep(0.05)

        # (1) cockpit at 1920x1080, live update within 2 s of an edge publishing
        browser.set_window_size(1920, 1080)
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.get(f"{base}/cockpit?token={kiosk}")
        assert "驾驶舱" in browser.title
        assert browser.find_element(By.ID, "totals").text.startswith("2 / 2 / 2")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#feed .item")) == 2
        time.sleep(1.0)  # the event stream is connected
        ev, files = evidence(tmp_path / "edge", 7, point="point-2")
        t0 = time.monotonic()
        outbox.add(ev, files)
        WebDriverWait(browser, 5, 0.05).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f'#feed [data-event="{ev.event_id}"]')
        )
        seen_s = time.monotonic() - t0
        assert seen_s < 2.0, seen_s
        assert browser.find_element(By.ID, "totals").text.startswith("3 / 3 / 3")
        assert "point-2" in browser.find_element(By.ID, "points").text  # the per-point table follows live
        assert browser.find_element(By.CSS_SELECTOR, "#bytype tr td:nth-child(2)").text == "3"
        # the feed shows preview.jpg (640 wide, every face blurred), not violation.jpg (1280)
        WebDriverWait(browser, 5).until(
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#feed img')].every(i=>i.complete&&i.naturalWidth==640)"
            )
        )
        # devices from the edge's MQTT status + heartbeat (relay heartbeat_s: 1), not from events
        browser.refresh()
        assert "anqi-dev-0001在线" in browser.find_element(By.ID, "devices").text.replace(" ", "")
        # the safe-riding rate per point from the heartbeat's pass counters: (8 - 2) / 8, helmets 7 / 8
        assert browser.find_element(By.ID, "safe").text.split() == ["point-1", "8", "2", "75.0%", "87.5%"]
        # with the period the counters cover (the current 5-minute interval, local time)
        period = browser.find_element(By.ID, "safeperiod").text
        assert period.startswith("统计时段 ") and period.count(":") == 2, period
        assert_no_overlap(browser, ".panel")
        assert_cjk_rendered(browser)
        browser.save_screenshot(str(out / "cockpit-1920x1080.png"))
        assert browser.get(f"{base}/cockpit?token=wrong") is None and "kiosk token" in browser.page_source

        # (2) console: lockout-free login, person file with a playing clip, a disposition with CSRF
        browser.get(f"{base}/console")
        assert "登录" in browser.title
        browser.find_element(By.ID, "username").send_keys("admin")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login").click()
        WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/console"))
        browser.get(f"{base}/console/person/P-001")
        assert "张三" in browser.page_source and "飞英社区" in browser.page_source
        assert len(browser.find_elements(By.CSS_SELECTOR, "#events video")) == 3
        WebDriverWait(browser, 10).until(
            lambda d: (
                d.execute_script(
                    "return [...document.querySelectorAll('#faces img')].map(i=>i.complete&&i.naturalWidth)"
                )
                == [80, 80, 80]
            )
        )
        playing = browser.execute_async_script(
            "const v=document.querySelector('#events video'),done=arguments[0];v.muted=true;"
            "v.play().then(()=>setTimeout(()=>done([v.currentTime,v.videoWidth]),600)).catch(e=>done(String(e)))"
        )
        assert isinstance(playing, list) and playing[0] > 0 and playing[1] == 320, playing
        browser.find_element(By.ID, "note").send_keys("现场教育")
        browser.find_element(By.CSS_SELECTOR, "#kind option[value=education]").click()
        browser.find_element(By.ID, "dispose").click()
        WebDriverWait(browser, 10).until(
            lambda d: (
                "现场教育"
                in d.execute_script(
                    "const t=document.getElementById('dispositions');return t?t.textContent:''"
                )
            )
        )
        browser.save_screenshot(str(out / "console-person-1920x1080.png"))
        with store.session() as s:
            assert [d.note for d in s.scalars(select(Disposition).where(Disposition.source == "manual"))] == [
                "现场教育"
            ]
        browser.get(f"{base}/console/audit")
        assert "web_person_view" in browser.page_source and "web_disposition" in browser.page_source
        browser.get(f"{base}/console/tasks")
        assert "飞英社区（3）" in browser.page_source and "sms_reminder" in browser.page_source
        browser.get(f"{base}/console/devices")
        assert "anqi-dev-0001" in browser.page_source and "在线" in browser.page_source
        assert "relay:" in browser.find_element(By.ID, "devices").text  # the heartbeat's components
        browser.get(f"{base}/console/users")  # 逐级授权: the form offers roles at or below one's own
        assert len(browser.find_elements(By.CSS_SELECTOR, "select[name=role] option")) == 4
        # a merge needs a reason (the browser refuses the empty field), is listed with it, and is undone from the
        # list (an empty unknown file: P-001's tier and tasks stay as they are for part 3)
        with store.session() as s:
            store.ensure_person(s, "U-web", kind="unknown")
        browser.get(f"{base}/console/person/U-web")
        browser.find_element(By.ID, "target").send_keys("P-001")
        browser.find_element(By.ID, "merge").click()
        assert browser.current_url.endswith("/console/person/U-web")  # required reason: not submitted
        browser.find_element(By.ID, "merge-reason").send_keys("同一人的两份档案")
        browser.find_element(By.ID, "merge").click()
        WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/console/person/P-001"))
        changes = browser.find_element(By.ID, "changes").text
        assert "合并" in changes and "admin" in changes and "同一人的两份档案" in changes
        browser.find_element(By.CSS_SELECTOR, "form.unmerge input[name=reason]").send_keys("并错了")
        browser.find_element(By.CSS_SELECTOR, "form.unmerge button").click()
        # the form posts and the page reloads: the list read during the reload can go stale, so read it again
        WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: "已撤销" in d.find_element(By.ID, "changes").text
        )
        assert_cjk_rendered(browser)
        browser.get(f"{base}/console/reviews")
        assert "待复核的人脸匹配（0）" in browser.page_source

        # (3) rider services at 390x844: own violations, case study, quiz -> task done (education)
        # the link the reminder tasks carry (made with the case-study task; no SMS gateway needed)
        with store.session() as s:
            task = s.scalars(
                select(Task).where(Task.person_id == "P-001", Task.kind == "case_study_link")
            ).one()
            task_id, link = task.task_id, task.payload["link"]
            sms = s.scalars(select(Task).where(Task.person_id == "P-001", Task.kind == "sms_reminder")).one()
            assert sms.payload["link"] == link and link.startswith(f"{base}/rider/")
        rtoken = link.rsplit("/", 1)[1]
        browser.delete_all_cookies()
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        browser.get(f"{base}/rider/{rtoken}")
        assert "我的违法记录" in browser.page_source and "案例学习" in browser.page_source
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        assert_no_overlap(browser, "fieldset")
        assert_cjk_rendered(browser)
        browser.save_screenshot(str(out / "rider-390x844.png"))
        # the lesson video streams from the package (Range requests) and plays in the phone-sized page
        lesson = browser.execute_async_script(
            "const v=document.querySelector('.rider video'),done=arguments[0];v.muted=true;v.currentTime=6;"
            "v.play().then(()=>setTimeout(()=>done([v.currentTime,v.videoWidth,v.duration]),700)).catch(e=>done(String(e)))"
        )
        assert isinstance(lesson, list) and lesson[0] > 6 and lesson[1] == 640 and lesson[2] == 20, lesson
        browser.find_element(By.ID, "query").click()
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "violations"))
        # the officer's on-the-spot education above settles all three (each is older than it)
        assert "违法 3 起，待处理 0 起" in browser.find_element(By.ID, "summary").text
        assert browser.find_element(By.ID, "violations").text.count("已处理（学习教育") == 3
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        assert_no_overlap(browser, ".rider table")
        browser.save_screenshot(str(out / "rider-query-390x844.png"))
        browser.back()
        for i, a in enumerate([0, 1, 1, 1]):
            browser.find_element(By.CSS_SELECTOR, f'input[name="q{i}"][value="{a}"]').click()
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "result"))
        assert "考试通过" in browser.find_element(By.ID, "result").text
        with store.session() as s:
            t = s.get(Task, task_id)
            assert t is not None and t.status == "done" and t.outcome == "education"
            assert (
                s.scalars(select(Disposition).where(Disposition.task_id == task_id)).one().kind == "education"
            )
        browser.get(f"{base}/rider/{rtoken}")  # one quiz per link; the records stay readable until it expires
        assert "本链接的考试已通过" in browser.page_source and not browser.find_elements(By.ID, "submit")
        browser.get(f"{base}/rider/{rtoken}/query")
        assert "待处理 0 起" in browser.find_element(By.ID, "summary").text
        # the edge stops cleanly: its status goes offline, and the console says so
        relay.stop()
        time.sleep(0.5)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.get(f"{base}/console")
        browser.find_element(By.ID, "username").send_keys("admin")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login").click()
        WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/console"))
        browser.get(f"{base}/console/devices")
        assert "离线" in browser.find_element(By.ID, "devices").text
    finally:
        server.should_exit = True
        relay.stop()
        cons.stop()
        th.join(5)
        store.close()


def test_login_locks_after_five_failures_and_grants_only_down(tmp_path: Path) -> None:
    store = CentralStore(f"sqlite:///{tmp_path / 'c.db'}")
    store.migrate()
    auth.add_user(store, "boss", PASSWORD, "admin", ["飞英社区"])
    for _ in range(5):
        with pytest.raises(auth.LoginError, match="错误"):
            auth.login(store, "boss", "wrong password!")
    with pytest.raises(auth.LoginError, match="锁定"):
        auth.login(store, "boss", PASSWORD)
    scoped = auth.Officer("boss", "admin", ("飞英社区",))
    auth.add_user(store, "w1", PASSWORD, "community", ["飞英社区"], granted_by=scoped)
    with pytest.raises(PermissionError):
        auth.add_user(store, "w2", PASSWORD, "community", ["龙溪社区"], granted_by=scoped)
    with pytest.raises(PermissionError):
        auth.add_user(
            store, "w3", PASSWORD, "admin", ["飞英社区"], granted_by=auth.Officer("p", "police", ())
        )
    sid, _ = auth.login(store, "w1", PASSWORD)
    o = auth.session_officer(store, sid)
    assert o is not None and o[0].role == "community" and o[0].sees("飞英社区") and not o[0].sees("龙溪社区")
    store.close()


def test_console_refuses_a_forged_form_and_hides_other_communities(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from central_sync.sharing.http import create_app

    cfg = central_cfg(tmp_path, 1883)
    store = CentralStore.from_config(cfg)
    with store.session() as s:
        store.ensure_person(s, "P-A", kind="enrolled", community="飞英社区")
        store.ensure_person(s, "P-B", kind="enrolled", community="龙溪社区")
    client = TestClient(create_app(cfg, store), follow_redirects=False)
    auth.add_user(store, "w1", PASSWORD, "community", ["飞英社区"])
    assert client.get("/console").status_code == 303  # not logged in
    r = client.post("/console/login", data={"username": "w1", "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/console"
    assert client.get("/console/person/P-A").status_code == 200
    assert client.get("/console/person/P-B").status_code == 404  # outside the worker's community
    forged = client.post("/console/person/P-A/dispose", data={"kind": "education", "csrf": "guess"})
    assert forged.status_code == 403
    assert client.get("/console/audit").status_code == 403  # administrators only
    with store.session() as s:
        from central_sync.storage.models import AuditEntry

        actions = [a.action for a in s.scalars(select(AuditEntry).where(AuditEntry.actor == "w1"))]
        assert actions == ["web_person_view", "web_person_denied"]
        assert s.scalars(select(Disposition)).first() is None
    store.close()


SHIPPED_CLIP = Path(__file__).resolve().parents[3] / "anqi_tools" / "demo" / "bikelane-cyclists.mp4"
EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "examples" / "bikelane-cyclists.yaml"


def test_the_cockpit_follows_an_edge_daemon_replay(tmp_path: Path, broker: Any, browser: Any) -> None:
    """The shipped bike-lane clip through the real edge daemon (real models) publishing to a real mosquitto:
    the open cockpit shows each event in its feed (the all-faces-blurred preview) and, from the edge's
    heartbeat, the point's safe-riding rate, without a reload."""
    import uvicorn
    import yaml

    from central_sync.sharing.http import create_app
    from edge.config import parse_config as edge_config
    from edge.daemon import EdgeDaemon

    (tmp_path / "central").mkdir()
    port = free_port()
    cfg = central_cfg(tmp_path / "central", broker.port, api={"port": port})
    store = CentralStore.from_config(cfg)
    cons = CentralConsumer(cfg, store=store, media_grace_s=1.0).start()
    server = uvicorn.Server(
        uvicorn.Config(create_app(cfg, store), host="127.0.0.1", port=port, log_config=None)
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["device"]["data_dir"] = str(tmp_path / "edge")
    data["source"]["uri"] = str(SHIPPED_CLIP)
    data["speaker"]["backend"] = "none"
    data["relay"]["mqtt"].update(host="127.0.0.1", port=broker.port)
    ecfg = edge_config(data, EXAMPLE.name, EXAMPLE.parent)
    point = ecfg.device.point_id
    try:
        kiosk = auth.create_kiosk_token(store, "big-screen")
        while not server.started:
            time.sleep(0.05)
        browser.set_window_size(1920, 1080)
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.get(f"http://127.0.0.1:{port}/cockpit?token={kiosk}")
        assert browser.find_element(By.ID, "totals").text == "0 / 0 / 0"
        assert "暂无通过计数" in browser.find_element(By.ID, "safe").text
        time.sleep(1.0)  # the event stream is connected
        daemon = EdgeDaemon(ecfg, mode="until_eof", install_signals=False, relay_wait_s=60)
        daemon.run()  # returns once the relay stopped (its last heartbeat carried the pass counters)
        n = len(daemon.events)
        assert n, "the edge found no violation in the shipped clip"
        counted = daemon.pipeline.passes.snapshot()
        riders = sum(p["riders"] for p in counted)
        violators = sum(p["violators"] for p in counted)
        WebDriverWait(browser, 30, 0.2).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#feed .item")) == min(n, 6)
        )
        assert browser.find_element(By.ID, "totals").text == f"{n} / {n} / {n}"
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#feed img')].every(i=>i.complete&&i.naturalWidth>0"
                "&&i.naturalWidth<=640)"
            )
        )
        # the rate arrives on the stream's count refresh (every 10 s), not by reloading the page
        rate = f"{100 * (riders - violators) / riders:.1f}%"
        WebDriverWait(browser, 25, 0.5).until(
            lambda d: (
                d.find_element(By.ID, "safe").text.split()[:4] == [point, str(riders), str(violators), rate]
            )
        )
        # the rest of the page followed too: the trend's bar of today, the device (offline after its clean
        # stop), the riders' files and their open table-2 tasks
        today = browser.execute_script(
            "return document.querySelector('#trend rect:last-of-type title').textContent"
        )
        assert today.endswith(f": {n}"), today
        # the device's clean-stop status can reach central after the refresh that brought the rate: wait for
        # the next refresh rather than read the row once
        want = [ecfg.device.device_id, "离线", str(n)]
        WebDriverWait(browser, 25, 0.5, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: d.find_element(By.ID, "devrows").text.split()[:3] == want
        )
        with store.session() as s:
            open_tasks = len(s.scalars(select(Task).where(Task.status == "open")).all())
        # unknown riders' files (no community): their occasional-tier reminders
        assert browser.find_element(By.ID, "tasks").text == (f"未登记 {open_tasks}" if open_tasks else "暂无")
        assert_no_overlap(browser, ".panel")
        browser.save_screenshot(str(Path(__file__).parent / "screenshots" / "cockpit-replay-1920x1080.png"))
    finally:
        server.should_exit = True
        cons.stop()
        th.join(5)
        store.close()
