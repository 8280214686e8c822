#!/usr/bin/env python3
"""Browser test of the dashboard, in Debian's chromium driven by Playwright.

Starts the real broker on loopback ports of its own, gives it traffic over the HTTP API,
dead-letters one message, then in the browser: sees the stream and its rate, finds the dead
letter, redrives it with the button (and its confirmation), and sees it back on its stream;
opened on #/agents/pink, it shows the agent a `cortex sub` connected over QUIC; opened on
#/tasks/T1, a task's state and history.
A screenshot of each step goes to target/browser-artifacts/.

Usage: tests/browser/dashboard.py [path/to/cortex]   (default: target/debug/cortex)
"""

import json
import re
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "browser-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 20_000


def start_broker(binary, data_dir):
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--resp", "127.0.0.1:0",
         "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    deadline = time.monotonic() + 30
    http = quic = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("cortex: HTTP listening on "):
            http = line.split()[-1]
        if line.startswith("cortex: QUIC listening on "):
            quic = line.split()[-1]
        if line.startswith("cortex: RESP listening on ") and http and quic:
            # Keep draining stdout so the broker never blocks on a full pipe.
            threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
            return proc, "http://" + http, quic
    proc.kill()
    raise SystemExit("the broker did not report its HTTP port")


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + "/api/v1" + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "cortex")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        proc, base, quic = start_broker(binary, data)
        stop = threading.Event()
        # An agent connected over QUIC, serving the tasks stream, for the Agents view.
        agent = subprocess.Popen(
            [binary, "sub", "tasks", "--agent", "pink", "--group", "reviewers",
             "--server", quic, "--data-dir", data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run(base, stop)
        finally:
            stop.set()
            agent.terminate()
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"dashboard browser test passed; screenshots in {ARTIFACTS}")


def run(base, stop):
    # A group that dead-letters on the first failure, one message that fails.
    call(base, "POST", "/streams/tasks/groups",
         {"group": "workers", "start": "$", "policy": {"max_attempts": 1}})
    call(base, "POST", "/streams/tasks/messages",
         {"fields": {"job": "doomed-build"}, "priority": "high"})
    got = call(base, "POST", "/streams/tasks/groups/workers/read", {"consumer": "w1", "count": 1})
    doomed = got["messages"][0]["id"]
    call(base, "POST", "/streams/tasks/groups/workers/nack",
         {"ids": [doomed], "error": "compiler exploded"})

    # Steady traffic, so the dashboard has a rate to show (bounded: stops with the test or
    # after 60 s).
    def traffic():
        end = time.monotonic() + 60
        i = 0
        while not stop.is_set() and time.monotonic() < end:
            call(base, "POST", "/streams/tasks/messages", {"fields": {"job": f"routine-{i}"}})
            i += 1
            stop.wait(0.05)
    threading.Thread(target=traffic, daemon=True).start()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")

        # 1. The stream is listed with a publish rate above zero.
        row = page.locator('#streams-table tr[data-stream="tasks"]')
        expect(row).to_be_visible(timeout=TIMEOUT_MS)
        rate = row.locator("td.rate")
        expect(rate).not_to_have_text("–", timeout=TIMEOUT_MS)
        expect(rate).not_to_have_text("0", timeout=TIMEOUT_MS)
        expect(page.locator("#dlq-count")).to_have_text("1", timeout=TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / "1-overview.png"), full_page=True)

        # 2. The dead letter is listed with its origin, reason and error; the tab has a URL.
        page.click('#tabs button[data-tab="dlq"]')
        expect(page).to_have_url(base + "/#/dlq")
        dead = page.locator("#dlq-table tbody tr", has_text="doomed-build")
        expect(dead).to_have_count(1, timeout=TIMEOUT_MS)
        expect(dead).to_contain_text("compiler exploded")
        expect(dead).to_contain_text("max_attempts")
        expect(dead).to_contain_text("tasks")
        page.screenshot(path=str(ARTIFACTS / "2-dead-letter.png"), full_page=True)

        # 3. Redrive asks first; confirming puts it back.
        dead.locator("button.redrive").click()
        dialog = page.locator("#confirm")
        expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
        expect(dialog).to_contain_text("back on tasks")
        page.screenshot(path=str(ARTIFACTS / "3-confirm.png"), full_page=True)
        page.click("#confirm-ok")
        expect(page.locator("#toast")).to_contain_text("Redriven: 1", timeout=TIMEOUT_MS)
        expect(page.locator("#dlq-table tbody tr", has_text="doomed-build")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "4-redriven.png"), full_page=True)

        # 4. The message browser (which consumes nothing) finds it back on its stream.
        page.click('#tabs button[data-tab="browse"]')
        page.select_option("#br-stream", "tasks")
        page.fill("#br-count", "1000")
        page.click("#browse-form button")
        back = page.locator("#br-table tbody tr", has_text="doomed-build")
        # The original entry plus the redriven copy, newer.
        expect(back).to_have_count(2, timeout=TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / "5-back-on-stream.png"), full_page=True)

        # Every view can be linked: a fresh page opened on #/dlq shows the dead letters, one
        # on #/streams/tasks that stream's groups, and Back returns to the view before.
        linked = browser.new_page(viewport={"width": 1280, "height": 900})
        linked.on("pageerror", lambda e: errors.append(str(e)))
        linked.goto(base + "/#/dlq")
        expect(linked.locator("#dlq")).to_be_visible(timeout=TIMEOUT_MS)
        expect(linked.locator('#tabs button[data-tab="dlq"]')).to_have_class(re.compile("active"))
        linked.goto(base + "/#/streams/tasks")
        expect(linked.locator("#streams")).to_be_visible(timeout=TIMEOUT_MS)
        expect(linked.locator("#stream-pick")).to_have_value("tasks", timeout=TIMEOUT_MS)
        linked.click('#tabs button[data-tab="timeline"]')
        expect(linked).to_have_url(base + "/#/timeline")
        linked.go_back()
        expect(linked.locator("#streams")).to_be_visible(timeout=TIMEOUT_MS)
        linked.screenshot(path=str(ARTIFACTS / "6-linked-stream.png"), full_page=True)
        # An agent has its own URL: pink, over QUIC, serving tasks with its group.
        linked.goto(base + "/#/agents/pink")
        expect(linked.locator("#agents")).to_be_visible(timeout=TIMEOUT_MS)
        pink = linked.locator('#agents-table tr[data-agent="pink"]')
        expect(pink).to_have_count(1, timeout=TIMEOUT_MS)
        expect(pink).to_contain_text("quic")
        expect(pink).to_contain_text("tasks / reviewers")
        expect(linked.locator("#agents-scope")).to_have_text("Agent pink")
        linked.screenshot(path=str(ARTIFACTS / "6b-agent.png"), full_page=True)
        # A task has its own URL too: one submitted to pink and canceled before anyone took
        # it shows its state and both changes; the list links to it.
        call(base, "POST", "/tasks", {"agent": "pink", "id": "T1", "fields": {"do": "refactor"}})
        call(base, "POST", "/tasks/T1/cancel")
        linked.goto(base + "/#/tasks/T1")
        expect(linked.locator("#tasks")).to_be_visible(timeout=TIMEOUT_MS)
        expect(linked.locator("#task-facts")).to_contain_text("canceled", timeout=TIMEOUT_MS)
        history = linked.locator("#task-history tbody tr")
        expect(history).to_have_count(2, timeout=TIMEOUT_MS)
        expect(history.nth(0)).to_contain_text("submitted")
        expect(history.nth(1)).to_contain_text("canceled")
        linked.screenshot(path=str(ARTIFACTS / "6c-task.png"), full_page=True)
        linked.click("#tasks-all")
        expect(linked).to_have_url(base + "/#/tasks")
        row = linked.locator('#tasks-table tr[data-task="T1"]')
        expect(row).to_contain_text("canceled", timeout=TIMEOUT_MS)
        row.locator("a").click()
        expect(linked).to_have_url(base + "/#/tasks/T1")
        linked.close()

        # The phone layout renders too.
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(base + "/")
        expect(phone.locator('#streams-table tr[data-stream="tasks"]')).to_be_visible(
            timeout=TIMEOUT_MS)
        phone.screenshot(path=str(ARTIFACTS / "7-phone.png"), full_page=True)
        browser.close()
        if errors:
            raise SystemExit("page errors: " + "; ".join(errors))

    # The broker agrees: the redriven copy is on the stream, the DLQ is empty.
    entries = call(base, "GET", "/streams/tasks/messages?count=1000")["messages"]
    assert sum(1 for e in entries if e["fields"].get("job") == "doomed-build") == 2, entries[:3]
    assert call(base, "GET", "/dlq")["dead_letters"] == []


if __name__ == "__main__":
    main()
