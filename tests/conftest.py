import os
import sys
from pathlib import Path

# Tests never touch the user's ~/.lepton, even the ones that forget the fixture.
os.environ.setdefault("LEPTON_HOME", str(Path(__file__).parent.parent / ".lepton-test-home"))
sys.path.insert(0, str(Path(__file__).parent))

from tiny_data import audio_dir, home, image_dir, text_csv  # noqa: E402,F401
from deploy_fixtures import deploy_home, deploy_runs, in_deploy_home  # noqa: E402,F401
