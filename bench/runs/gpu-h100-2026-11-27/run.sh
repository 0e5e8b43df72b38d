# One lease: install the wheels, GPU tests, bench/gpu.sh; CPU benchmarks on cores 14-15 meanwhile.
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 PYTHON=python3
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/shim:$PWD
nvidia-smi -L
python3 -c "import torch,torchvision,transformers,timm,sentence_transformers as s,finetuner;print('versions', torch.__version__,torchvision.__version__,transformers.__version__,timm.__version__,s.__version__, finetuner.list_models()[:4])" 2>&1 | tail -3
python3 .gpu/prep.py /tmp/minilm > $OUT/prep.log 2>&1 || { tail -20 $OUT/prep.log; exit 1; }
bash .gpu/cpu.sh > $OUT/cpu.log 2>&1 &
SECONDS=0
timeout 130 taskset -c 0-13 python3 -m pytest tests/gpu -q -p no:cacheprovider > $OUT/tests.log 2>&1; echo "tests rc=$? in ${SECONDS}s"; tail -25 $OUT/tests.log
SECONDS=0
GPU_BENCH_TIMEOUT=300 taskset -c 0-13 bash bench/gpu.sh > $OUT/gpu.log 2>&1; echo "gpu.sh rc=$? in ${SECONDS}s"; grep -E '^\{|^\||Error|error' $OUT/gpu.log | grep -v '^\{' | tail -30
wait
grep -vi warn $OUT/cpu.log | tail -20
