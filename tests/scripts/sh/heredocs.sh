# Here-documents: expansion, quoted delimiters, <<- tab stripping, feeding loops and commands.
# status: 5
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-heredocs.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

name=world
n=3
cat <<END
hello $name
sum $((n + 4)) cmd $(echo sub)
escaped \$name and \`x\` and back\\slash
END
cat <<'END'
literal $name $((1+1)) `echo no`
END
cat <<"END"
also literal $name
END
	cat <<-END
	tabs stripped $name
		inner tabs too
	END
while IFS=, read -r a b; do
    echo "a=$a b=$b"
done <<END
1,one
2,two
3,three
END
tr a-z A-Z <<END | sed 's/^/> /'
piped $name
END
sort -r <<END > sorted
alpha
gamma
beta
END
cat sorted
x=$(cat <<END
in command substitution: $n
END
)
echo "$x"
cat <<A; cat <<B
first doc
A
second doc
B
f() {
    cat <<END
function heredoc arg=$1
END
}
f value
exit 5
