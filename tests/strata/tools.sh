# Real tools on directory $1 (run under the shim, on /strata and on tmpfs;
# the outputs must match byte for byte): find, tar create and extract, cp -a
# with symbolic and hard links, cp -r + diff -r, Python's shutil.copytree,
# pipelines, and the error text of failing commands.  $2: a tar archive made
# on the kernel's file system, extracted here too.
cd "$1" || exit 1
umask 022
mkdir -p src/a/b/c src/empty
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(7).randbytes(1500000))' > src/a/big.bin
seq 1 20000 > src/a/b/numbers.txt
: > src/a/zero
printf 'x' > src/a/b/c/one
ln -s b/numbers.txt src/a/rel_link
ln -s ../../src/a src/empty/up_link
ln -s missing src/dangling
ln src/a/zero src/a/zero_hard
chmod 600 src/a/b/c/one
chmod 711 src/a/b
# times on everything, as a release tarball has them
find src -exec touch -h -d '2020-02-03 04:05:06' {} +
# a directory's link count is always 2 on Strata (README limits): not listed
lst() { { find "$@" -type d -printf 'd %m %P\n'; find "$@" ! -type d -printf '%y %m %n %s %l %P\n'; } | sort; }
echo "== find"; lst src
find src -type f -size +1k | sort
find src -name '*.txt' -newer src/a/zero -o -name 'one' | sort
echo "== tar"
tar -cf src.tar src && tar -tvf src.tar --numeric-owner | sort -k6
mkdir ex && tar -C ex -xpf src.tar && lst ex
diff -r --no-dereference src ex/src && echo "diff tar ok"
mkdir ex2 && tar -C ex2 -xzf "$2" && lst ex2 && cat ex2/kernel/k.txt
echo "== cp -a"
cp -a src copy && lst copy && diff -r --no-dereference src copy && echo "diff cp -a ok"
stat -c '%n %a %Y %h' copy/a/big.bin copy/a/zero copy/a/zero_hard
stat -c '%n %a %Y' copy/a/b copy/a/rel_link
echo "== cp -r"
cp -r src rcopy && diff -r --no-dereference src rcopy && echo "diff cp -r ok"
lst rcopy
echo "== shutil"
python3 -c 'import shutil; shutil.copytree("src", "pycopy", symlinks=True)' && diff -r --no-dereference src pycopy && echo "diff shutil ok"
lst pycopy
echo "== pipelines"
find . -type f ! -name '*.tar' | sort | xargs sha256sum  # an archive follows readdir order
cat src/a/b/numbers.txt | grep 7 | sort -r | uniq | head -3 | tee piped.txt | wc -l
sort -n < src/a/b/numbers.txt | tail -2 > tail.txt; cat tail.txt piped.txt
tar -cf - src | (cd ex && tar -xf - -C . --transform 's/^src/piped/') && diff -r --no-dereference src ex/piped && echo "tar pipe ok"
echo "== errors"
cat src/missing 2>&1; echo "rc=$?"
mkdir src 2>&1; echo "rc=$?"
rmdir src 2>&1; echo "rc=$?"
cp src/a/zero src/nodir/x 2>&1; echo "rc=$?"
ls src/missing 2>&1; echo "rc=$?"
ln -s x src/dangling 2>&1; echo "rc=$?"
cat src/empty/up_link 2>&1; echo "rc=$?"
tar -xf no.tar 2>&1; echo "rc=$?"
echo "== rm"
rm -r copy rcopy pycopy ex ex2 src.tar && ls
