"""zIO per-elision cost without a network: one command, one table, one JSON file.

  python bench/zio_cost.py [--sizes 65536,...] [--copies 0,1,2,4] [--iters N] [--zio-opt OPT]

One process loops: pread SIZE bytes from a tmpfs file into a buffer, make K
chained copies into freshly malloc'd buffers, pwrite the last one to a tmpfs
file, free the copies.  The loop runs plainly and under `zio run`; the figure
is the minimum over 24 batches of the time per iteration, so other load on
the machine (which the echo and Redis benchmarks feel through the network
stack) mostly drops out.  zio - plain at the same K is what the elisions
cost (or save); K=0 is the input/output baseline.
"""
import argparse
import os
import subprocess
import tempfile

from zio_benchlib import built, launch, print_table, write_json

SOURCE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
int main(int argc, char **argv)
{
    size_t size = strtoul(argv[1], 0, 0);
    int k = atoi(argv[2]), iters = atoi(argv[3]);
    int in_fd = open(argv[4], O_RDONLY), out_fd = open(argv[5], O_WRONLY);
    char *in = malloc(size), *c[8];
    double b[24];
    for (int batch = 0; batch < 24; batch++) {
        double t = now();
        for (int it = 0; it < iters; it++) {
            if (pread(in_fd, in, size, 0) != (ssize_t)size)
                return 2;
            char *last = in;
            for (int i = 0; i < k; i++) {
                c[i] = malloc(size);
                memcpy(c[i], last, size);
                last = c[i];
            }
            if (pwrite(out_fd, last, size, 0) != (ssize_t)size)
                return 3;
            for (int i = 0; i < k; i++)
                free(c[i]);
        }
        b[batch] = (now() - t) / iters;
    }
    qsort(b, 24, sizeof b[0], cmp);
    printf("%.2f\n", b[0]);
    return 0;
}
"""


def compile_loop(tmp):
    src, exe = os.path.join(tmp, "loop.c"), os.path.join(tmp, "loop")
    with open(src, "w") as f:
        f.write(SOURCE)
    subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    return exe


def run(exe, size, k, iters, zio, zio_opts, tmp):
    inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(inp, "wb") as f:
        f.write(os.urandom(size))
    open(out, "wb").close()
    p = launch([exe, str(size), str(k), str(iters), inp, out], zio, zio_opts,
               stdout=subprocess.PIPE, text=True)
    got, _ = p.communicate(timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"loop failed (size {size}, K {k}, zio {zio})")
    return float(got)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="65536,262144,1048576")
    ap.add_argument("--copies", default="0,1,2,4")
    ap.add_argument("--iters", type=int, default=40, help="iterations per batch")
    ap.add_argument("--zio-opt", action="append", default=[],
                    help="option passed to `zio run` (repeatable), e.g. --zio-opt=--threshold=16384")
    args = ap.parse_args()
    rows, points = [], []
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="zio-cost-", dir=shm) as tmp:
        exe = compile_loop(tmp)
        for size in [int(s) for s in args.sizes.split(",")]:
            for k in [int(k) for k in args.copies.split(",")]:
                plain = run(exe, size, k, args.iters, False, (), tmp)
                zio = run(exe, size, k, args.iters, True, args.zio_opt, tmp)
                points.append({"size": size, "copies": k, "plain_us": plain, "zio_us": zio,
                               "zio_minus_plain_us": round(zio - plain, 2)})
                rows.append([size, k, f"{plain:.1f}", f"{zio:.1f}", f"{zio - plain:+.1f}",
                             f"{plain / zio:.2f}"])
                print(f"  size {size} K {k}: plain {plain:.1f} us, zio {zio:.1f} us", flush=True)
    print()
    print_table(["size", "K", "plain us/iter", "zio us/iter", "zio-plain", "speed-up"], rows)
    write_json("zio_cost.json", {"iters": args.iters, "zio_opts": args.zio_opt, "points": points})


if __name__ == "__main__":
    main()
