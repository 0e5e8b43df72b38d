# CPU figures on the lent machine's own processor, 2 threads on cores 14-15 (AMX or not: lscpu says)
lscpu | grep -E "Model name"; lscpu | grep -o 'amx[a-z0-9_]*\|avx512_bf16' | sort -u | tr '\n' ' '; echo
export OMP_NUM_THREADS=2
timeout 230 taskset -c 14,15 python3 bench/bench_vision.py
timeout 170 taskset -c 14,15 python3 bench/bench_text.py --threads 2
