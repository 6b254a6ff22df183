"""Test-run settings for the whole repository (core, plugins, contrib)."""

import os

# Keep stray third-party plugins installed in the environment out of the test
# run: only DIFE's own plugins and the contrib template load.
FIRST_PARTY = "openclip,hfclip,shapes,backdoors,badtexttower,interfaces_extra,plugin_template"
os.environ.setdefault("DIFE_LOAD_PLUGINS", FIRST_PARTY)
os.environ.setdefault("DIFE_STRICT_PLUGINS", "1")
