# Shell redirections and pipelines on directory $1 (run by sh and bash, under
# the Strata shim, once on /strata and once on tmpfs; outputs must match).
D=$1
seq 1 5 > "$D/o.txt"; echo "seq rc=$?"
cat "$D/o.txt"
printf hello > "$D/h.txt"
wc -c < "$D/h.txt"
cat < "$D/h.txt"; echo
seq 6 8 >> "$D/o.txt"
tail -n 2 < "$D/o.txt"
ls "$D/nonexistent" 2> "$D/err.txt"; echo "ls rc=$?"
sed "s#$D#DIR#" "$D/err.txt"
exec 3<> "$D/o.txt"
head -c 4 <&3; echo "|"
read line <&3; echo "read: $line"
cat <&3 | wc -l
echo tail-of-3 >&3
exec 3>&-
tail -n 1 "$D/o.txt"
{ echo first; seq 2; printf 'last\n'; } > "$D/group.txt"
cat "$D/group.txt"
(echo sub; seq 3 4) >> "$D/group.txt"
wc -l < "$D/group.txt"
seq 1 200 | sort -r | head -n 3 > "$D/pipe.txt"
cat "$D/pipe.txt"
sort -n < "$D/pipe.txt" | tee "$D/tee.txt" | wc -l
cat "$D/tee.txt"
exec 4> "$D/shared.txt"
echo one >&4
sh -c 'echo two >&4'
echo three >&4
exec 4>&-
cat "$D/shared.txt"
python3 -c 'import sys; sys.stdout.write("py-stdout\n"); sys.stderr.write("py-stderr\n")' > "$D/py.out" 2> "$D/py.err"
cat "$D/py.out" "$D/py.err"
while read -r n; do echo "line $n"; done < "$D/pipe.txt"
: > "$D/o.txt"
wc -c < "$D/o.txt"
