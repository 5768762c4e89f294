#!/usr/bin/env bash
# The paper's Table 1 (DAVIS-2017 val) with the official checkpoint: downloads DAVIS-2017 trainval 480p and the
# DAVIS interactive scribbles, converts ATNet-checkpoint.pth, runs the DAVIS interactive protocol with the
# released settings (8 rounds, robot skeletons of 2 nodes or more) once with J and once with J&F, and prints the
# paper's numbers beside ours. Needs an internet connection (about 800 MB of downloads) and, to finish in hours
# rather than days, a GPU (pip install "jax[cuda12]==0.10.2").
#
#   experiments/reproduce_davis17.sh            # run from the repository root, in the installed environment
#
# A rerun skips what is done: verified downloads, the extracted folder, the converted weights and the
# evaluations' finished samples (evaluate --resume). Settings, by environment variable:
#   ATNET_DATA               where the downloads and the DAVIS folder go (default: data)
#   ATNET_CHECKPOINT         the official checkpoint (default: ATNet-checkpoint.pth)
#   ATNET_WEIGHTS            the converted weights folder (default: weights/atnet)
#   ATNET_OUTPUT             the evaluations and the table (default: eval/davis17)
#   ATNET_DAVIS_BASE_URL     where the DAVIS files are (default: https://data.vision.ee.ethz.ch/csergi/share)
#   ATNET_DAVIS_SHA256, ATNET_SCRIBBLES_SHA256   the downloads' checksums (default: the official files')
#   ATNET_EVAL_ARGS          more evaluate flags, e.g. "--size 480"
set -euo pipefail

DATA="${ATNET_DATA:-data}"
CHECKPOINT="${ATNET_CHECKPOINT:-ATNet-checkpoint.pth}"
WEIGHTS="${ATNET_WEIGHTS:-weights/atnet}"
OUTPUT="${ATNET_OUTPUT:-eval/davis17}"
BASE_URL="${ATNET_DAVIS_BASE_URL:-https://data.vision.ee.ethz.ch/csergi/share}"
DAVIS_ZIP="davis/DAVIS-2017-trainval-480p.zip"
SCRIBBLES_ZIP="DAVIS-Interactive/DAVIS-2017-scribbles-trainval.zip"
# The checksums davisinteractive (davisinteractive/dataset/davis.py) checks the same files against.
DAVIS_SHA256="${ATNET_DAVIS_SHA256:-e3d0b5b77c3d031b000a19e0e25e3e2cac65d183755601bc2cf066df1a2aa492}"
SCRIBBLES_SHA256="${ATNET_SCRIBBLES_SHA256:-6c6811c67ef757091212a98b68b841305f92b57f6cd2938e0fa94ae8591c3226}"
CHECKPOINT_URL="https://drive.google.com/file/d/1t1VO2zy3pLBXCWqme9h63Def86Y4ECIH/view?usp=sharing"
PYTHON="${PYTHON:-python}"

# 1. The data: download (verified by sha256, resumable by rerunning), then extract both zips (root folder DAVIS/).
fetch() {  # fetch URL SHA256 ZIP_PATH
  "$PYTHON" - "$@" <<'EOF'
import hashlib, shutil, sys, urllib.request
from pathlib import Path

url, sha256, path = sys.argv[1], sys.argv[2], Path(sys.argv[3])


def digest(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


if path.is_file() and digest(path) == sha256:
    print(f"{path}: already downloaded")
    sys.exit(0)
path.parent.mkdir(parents=True, exist_ok=True)
part = path.with_name(path.name + ".part")
print(f"downloading {url} -> {path}", flush=True)
try:
    with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
except OSError as err:
    sys.exit(f"reproduce_davis17: cannot download {url}: {err}")
if digest(part) != sha256:
    sys.exit(f"reproduce_davis17: {url} has sha256 {digest(part)}, expected {sha256} (a changed or broken file; "
             f"{part} kept for inspection)")
part.replace(path)
EOF
}

extract() {  # extract ZIP_PATH DEST: the members under DAVIS/ (nothing outside DEST)
  "$PYTHON" - "$@" <<'EOF'
import sys, zipfile
from pathlib import Path

zip_path, dest = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
with zipfile.ZipFile(zip_path) as archive:
    members = [m for m in archive.infolist() if m.filename.startswith("DAVIS/")]
    for member in members:
        if dest not in (dest / member.filename).resolve().parents:
            sys.exit(f"reproduce_davis17: {zip_path}: member {member.filename!r} points outside {dest}")
    if not members:
        sys.exit(f"reproduce_davis17: {zip_path} holds no DAVIS/ folder")
    archive.extractall(dest, members)
print(f"extracted {zip_path} into {dest / 'DAVIS'}")
EOF
}

fetch "$BASE_URL/$DAVIS_ZIP" "$DAVIS_SHA256" "$DATA/downloads/$(basename "$DAVIS_ZIP")"
fetch "$BASE_URL/$SCRIBBLES_ZIP" "$SCRIBBLES_SHA256" "$DATA/downloads/$(basename "$SCRIBBLES_ZIP")"
if [ ! -f "$DATA/DAVIS/ImageSets/2017/val.txt" ]; then
  extract "$DATA/downloads/$(basename "$DAVIS_ZIP")" "$DATA"
fi
if [ ! -d "$DATA/DAVIS/Scribbles" ]; then
  extract "$DATA/downloads/$(basename "$SCRIBBLES_ZIP")" "$DATA"
fi

# 2. The official weights: a manual download (Google Drive), converted without PyTorch.
if [ ! -f "$WEIGHTS/atnet_jax.json" ]; then
  if [ ! -f "$CHECKPOINT" ]; then
    echo "reproduce_davis17: the official checkpoint $CHECKPOINT is not there. Download ATNet-checkpoint.pth from"
    echo "  $CHECKPOINT_URL"
    echo "(the released code's README, github.com/yuk6heo/IVOS-ATNet), put it at $CHECKPOINT (or set"
    echo "ATNET_CHECKPOINT) and run this script again; the data above is kept."
    exit 1
  fi
  "$PYTHON" -m atnet_jax.convert --input "$CHECKPOINT" --output "$WEIGHTS"
fi

# 3. The DAVIS interactive protocol on val, as the released evaluation: 8 rounds, min_nb_nodes 2, J and J&F.
for metric in J J_AND_F; do
  # shellcheck disable=SC2086
  "$PYTHON" -m atnet_jax.evaluate --checkpoint "$WEIGHTS" --input "$DATA/DAVIS" --subset val --max-rounds 8 \
      --min-nb-nodes 2 --metric "$metric" --output "$OUTPUT/$metric" --resume ${ATNET_EVAL_ARGS:-}
done

# 4. The table: the paper's Table 1 (DAVIS-2017 val) beside ours.
"$PYTHON" - "$OUTPUT" <<'EOF'
import json, sys
from pathlib import Path

output = Path(sys.argv[1])
paper = {"J": (0.771, 0.790), "J_AND_F": (0.809, 0.827)}
rows = []
for metric, label in (("J", "J"), ("J_AND_F", "J&F")):
    summary = json.loads((output / metric / "summary.json").read_text())
    ours = (summary["auc"], summary["metric_at_threshold"]["value"])
    rows += [(f"AUC-{label}", paper[metric][0], ours[0]), (f"{label}@60s", paper[metric][1], ours[1])]
lines = ["DAVIS-2017 val, 8 rounds, robot min_nb_nodes 2 (model time; the official framework counts wall clock)",
         "", "| metric | paper (Table 1) | atnet_jax |", "|---|---|---|"]
lines += [f"| {name} | {p:.3f} | {o:.3f} |" for name, p, o in rows]
text = "\n".join(lines) + "\n"
(output / "table.md").write_text(text)
print(text + f"\n(written to {output / 'table.md'})")
EOF
