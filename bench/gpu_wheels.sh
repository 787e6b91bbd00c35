#!/usr/bin/env bash
# Fetch (here, where PyPI is reachable) the wheels bench/gpu.sh installs on a GPU machine that
# has Python 3.12 with CUDA torch, transformers, numpy, scipy... but no funasr and no network.
# They land in bench/.cache/wheels-cp312 (ignored by git; about 40 MB): carry that folder.
#
#     bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}  # the GPU image's Python; PYVER=3.11 makes a set to check gpu.sh here
TAG=cp${PYVER/./}
DEST=bench/.cache/wheels-$TAG
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$DEST"

# funasr, the widget's own needs, and what they import that the GPU image lacks
# (the image's package list: /work/.library/device/KINDS.md).
WHEELS=(
  funasr==1.4.16 kaldi-native-fbank==1.23.0 soxr==1.1.0 anywidget==0.11.0 psygnal==0.16.1
  ipywidgets==8.1.9 widgetsnbextension==4.0.16 jupyterlab-widgets==3.0.17 comm==0.2.3 traitlets==5.16.1
  ipython==9.18.1 ipython-pygments-lexers==1.1.1 jedi==0.20.1 parso==0.8.7 matplotlib-inline==0.2.2
  pexpect==4.9.0 ptyprocess==0.7.0 prompt-toolkit==3.0.53 wcwidth==0.9.4 stack-data==0.6.3
  asttokens==3.0.2 executing==2.3.0 pure-eval==0.2.4 decorator==5.3.1
  omegaconf==2.3.1 hydra-core==1.3.8 antlr4-python3-runtime==4.9.3 modelscope==1.40.2
  modelscope-hub==0.5.1 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 kaldiio==2.18.1
  librosa==0.11.0 audioread==3.1.0 pooch==1.9.0 platformdirs==4.14.8 soundfile==0.14.0
  jaconv==0.5.0 jamo==0.4.1 rapidfuzz==3.14.6 tensorboardX==2.6.5 torch-complex==0.4.4
  websockets==17.4 truststore==0.10.5 httpx2==2.16.2 httpcore2==2.16.2
)
for spec in "${WHEELS[@]}"; do
  name=${spec%%==*}
  if ls "$DEST" | grep -qi "^${name//-/[-_]}-"; then continue; fi
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --abi "$TAG" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$DEST" "$spec" 2>/dev/null ||
    "$PY" -m pip wheel --quiet --no-deps -w "$DEST" "$spec"  # a pure-Python sdist: build it here
done
# jieba ships as a source archive only: build its (pure Python) wheel here.
ls "$DEST" | grep -qi '^jieba-' || "$PY" -m pip wheel --quiet --no-deps -w "$DEST" jieba==0.42.1
# the real FSMN-VAD weights travel too (bench/.cache/models/fsmn-vad, 1.7 MB)
"$PY" -m bench.models fsmn-vad >/dev/null
du -sh "$DEST"
