# cd into directory $1 and work with relative paths (run by bash under the
# shim, on /strata and on tmpfs; outputs must match once $1 is replaced).
cd "$1" || exit 1
pwd | sed "s#$1#D#"
mkdir -p a/b/c
echo x > a/b/f
cd a
cat b/f
ls
(cd b && cat f && pwd | sed "s#$1#D#")
find . | sort
cp b/f b/g
cat ./b/../b/g
mv b/g g2
ls . b
cd b/c
echo deep > ../../deep.txt
cat ../../deep.txt
/bin/pwd | sed "s#$1#D#"
python3 -c 'import os; print(os.getcwd().endswith("/a/b/c"), sorted(os.listdir("..")))'
cd ../../..
printf 'one\ntwo\n' > a/s.txt
sed -i 's/one/ONE/' a/s.txt
cat a/s.txt
realpath a/b/../s.txt | sed "s#$1#D#"
readlink -f a/./s.txt | sed "s#$1#D#"
readlink a/s.txt; echo "readlink rc=$?"
t=$(mktemp a/tmp.XXXXXX) && echo mine > "$t" && cat "$t" && rm "$t"
td=$(mktemp -d a/dir.XXXXXX) && rmdir "$td" && echo mkdtemp ok
python3 -c 'import os, tempfile; fd, n = tempfile.mkstemp(dir="a"); os.write(fd, b"t"); os.close(fd); print(open(n).read()); os.remove(n)'
rm -r a
ls
