# cd and pwd with symlinks: logical and physical paths, cd -P, cd .., cd -, $PWD and $OLDPWD.
# status: 22
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-cd-pwd.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

# Paths are printed relative to the temp dir (its physical path, in case /tmp is a link).
P=$(pwd -P)
rel() { case $1 in "$T"*) echo "T${1#"$T"}" ;; "$P"*) echo "P${1#"$P"}" ;; *) echo "$1" ;; esac; }
mkdir -p real/sub/deeper
ln -s real link
ln -s real/sub sublink
ln -s ../.. real/sub/up
cd link
rel "$(pwd)"
rel "$(pwd -P)"
rel "$PWD"
cd sub
rel "$(pwd)"
cd ..
echo "cd .. from a logical path: $(rel "$(pwd)")"
cd "$T"
cd -P link/sub
echo "cd -P: $(rel "$(pwd)")"
cd ..
echo "cd .. after cd -P: $(rel "$(pwd)")"
cd "$T/sublink/deeper"
rel "$(pwd)"
rel "$(pwd -P)"
cd "$T/real/sub/up"
echo "through a relative link: $(rel "$(pwd)") physically $(rel "$(pwd -P)")"
cd "$T/link"
cd "$T/real/sub"
rel "$OLDPWD"
cd - > /dev/null
echo "cd - returns to $(rel "$(pwd)")"
cd /
pwd
cd "$T"
readlink link
readlink sublink
readlink -f link/sub | sed "s|^$P|P|"
ls -l link | sed 's/.* link/link/'
cd nonexistent 2>/dev/null
echo "cd to a missing dir: status $?, still in $(rel "$(pwd)")"
(cd real && rel "$(pwd)")
rel "$(pwd)"
cd
echo "plain cd goes to HOME: $(pwd)"
exit 22
