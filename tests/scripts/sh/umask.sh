# umask: printing, octal and symbolic settings, effect on new files, directories and subshells.
# status: 21
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-umask.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

umask 022
umask
umask -S
touch f022
mkdir d022
stat -c '%a %n' f022 d022
umask 077
umask
touch f077
mkdir d077
stat -c '%a %n' f077 d077
umask 0002
touch f002
stat -c '%a %n' f002
(umask 0777; umask)
umask
umask u=rwx,g=rx,o=
umask
echo x > redirected
stat -c '%a %n' redirected
umask 000
touch f000
mkdir d000
stat -c '%a %n' f000 d000
chmod 4755 f000
stat -c '%a %A' f000
chmod go-w d000
stat -c '%a %A' d000
sh -c umask
exit 21
