"""Browser tests of the ``avvos web`` demo (Chromium driven by Playwright, fake camera and microphone)."""
