"""The README's screenshot of `cgsgan view`: the built-in network's first head in headless Chromium.

    pip install playwright                       # drives an installed Chromium; no browser download
    python docs/viewer/screenshot.py             # -> docs/viewer/viewer.png (about 40 s)
    python docs/viewer/screenshot.py --chromium /usr/bin/chromium --wait 30

The page sorts the splats by depth in a web worker after they arrive, so the
screenshot waits in real time (``--wait`` seconds). Chromium's own ``--screenshot``
with a virtual time budget fires before the sort and shows the splats in file
order, back and front mixed. WebGL runs in software (SwiftShader), so no GPU is
needed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

PORT = 8093


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="Chromium executable [default: chromium on PATH]")  # fmt: skip
    parser.add_argument("--wait", type=float, default=20.0, help="seconds between loading and the screenshot")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("viewer.png"))
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("this script needs playwright: pip install playwright")
    if not args.chromium:
        sys.exit("no Chromium found: install it (apt-get install chromium) or pass --chromium")
    server = subprocess.Popen([sys.executable, "-m", "cgsgan", "view", "--port", str(PORT)])
    try:
        time.sleep(10)  # the network loads and the first head is generated before the page connects
        with sync_playwright() as p:
            flags = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
            browser = p.chromium.launch(executable_path=args.chromium, args=flags)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"http://127.0.0.1:{PORT}")
            time.sleep(args.wait)
            # the client's toast that WebGL runs in software is true of a headless browser, not of users' ones
            page.add_style_tag(content='[class*="mantine-Notification"] { display: none !important; }')
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
