#!/usr/bin/env bash
# Install Chromium, its driver and ffmpeg (ffprobe) so that tests/test_serve_browser.py can drive
# `vmas serve` in a real headless browser.
#
# Installs only when something is missing AND (CI=true or running as root). Never fails: without
# apt-get, root or network, it says so and the browser tests are skipped with the reason.
set -u

have_browser() { command -v chromium && command -v chromedriver && command -v ffprobe; } >/dev/null 2>&1

if have_browser; then
  echo "install-browser: chromium, chromedriver and ffprobe already installed"
  exit 0
fi
if [ "${CI:-}" != "true" ] && [ "$(id -u)" != 0 ]; then
  echo "install-browser: not CI and not root; skipping (the browser tests will be skipped)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: needs root and apt-get; skipping (the browser tests will be skipped)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver ffmpeg >/dev/null; then
  echo "install-browser: installed $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2) and ffprobe"
else
  echo "install-browser: apt-get install chromium chromium-driver ffmpeg failed; the browser tests will be skipped"
fi
exit 0
