// The built-in rules, embedded so the binary works anywhere. The text is
// rules/default.yaml verbatim: edit that file, then copy it here
// (`RuleSetTests.testEmbeddedDefaultRulesMatchTheFile` fails while they differ).

/// The default rules file.
public enum DefaultRules {
    public static let name = "default"
    public static var source: RuleSource { RuleSource(name: name, text: text) }

    public static let text = #"""
# Flightbox built-in security rules.
#
# The same language as `--rules FILE`: copy this file, change it, and pass it
# with --rules (a rule, macro or list with the same name replaces this one;
# `- rule: NAME` with `enabled: false` turns a rule off). Fields, operators
# and event types: README.md, "Security rules". Every rule names the event
# types it matches (evt.type), so it is shown only those events.

- list: shell_binaries
  items: [sh, bash, dash, zsh, ksh, ksh93, mksh, fish, csh, tcsh, ash, busybox]

- list: interpreter_binaries
  items: [python, python3, python2, perl, ruby, php, lua, node, tclsh]

- list: network_service_binaries
  items: [nginx, httpd, apache2, lighttpd, caddy, php-fpm, uwsgi, gunicorn, tomcat, mysqld, postgres, redis-server, memcached, vsftpd, proftpd, named, dnsmasq, squid, haproxy, envoy, traefik]

# Programs whose job is reading credentials or writing system configuration.
- list: credential_readers
  items: [sshd, sudo, su, login, passwd, chpasswd, chage, useradd, usermod, userdel, groupadd, groupmod, vipw, unix_chkpwd, systemd, systemd-logind, systemd-userdbd, cron, crond, atd, polkitd, gdm-session-wor, lightdm, sssd, nscd, accounts-daemon, newgrp, gpasswd, pwck, grpck, shadowconfig]

- list: package_managers
  items: [dpkg, apt, apt-get, aptitude, rpm, dnf, yum, zypper, apk, pacman, snapd, unattended-upgr, ucf, debconf, dpkg-preconfigu]

- list: known_setuid_programs
  items: [/usr/bin/sudo, /bin/sudo, /usr/bin/su, /bin/su, /usr/bin/passwd, /usr/bin/chsh, /usr/bin/chfn, /usr/bin/newgrp, /usr/bin/gpasswd, /usr/bin/mount, /bin/mount, /usr/bin/umount, /bin/umount, /usr/bin/pkexec, /usr/lib/dbus-1.0/dbus-daemon-launch-helper, /usr/lib/openssh/ssh-keysign, /usr/bin/fusermount, /usr/bin/fusermount3, /usr/bin/crontab, /usr/sbin/unix_chkpwd, /usr/bin/at, /usr/bin/ssh-agent]

- list: debuggers
  items: [gdb, strace, ltrace, lldb, valgrind, perf, rr, criu, ptrace-helper]

- list: module_loaders
  items: [modprobe, insmod, kmod, systemd-modules, systemd-udevd, depmod]

- list: bpf_loaders
  items: [flightbox, bpftool, bpftrace, systemd, falco, tetragon, tracee, bcc, cilium-agent, pwru, retsnoop, runqlat, biolatency, execsnoop, opensnoop]

- list: build_tools
  items: [make, gmake, ninja, cmake, cargo, go, swift-build, swift-test, gradle, mvn, bazel, meson, scons, dh_auto_test, dpkg-buildpacka, rpmbuild, configure, ctest, libtool, cc, gcc, clang, ld]

- macro: open_read
  condition: evt.type = open and not fd.write and not evt.failed

- macro: open_write
  condition: evt.type = open and fd.write and not evt.failed

- macro: shell_procs
  condition: proc.name in (shell_binaries)

# --- Credential access -------------------------------------------------------

- rule: Read shadow password file
  desc: A process other than the login and account tools read /etc/shadow or /etc/gshadow.
  condition: open_read and fd.name in (/etc/shadow, /etc/gshadow, /etc/shadow-, /etc/gshadow-) and not proc.name in (credential_readers) and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) read %fd.name; parent %proc.pname"
  priority: warning
  tags: [T1003.008, credential_access]

- rule: Read SSH private key
  desc: A process other than ssh tools read a private key under .ssh or /etc/ssh.
  condition: open_read and (fd.name contains /.ssh/id_ or (fd.name startswith /etc/ssh/ssh_host_ and fd.name endswith _key)) and not fd.name endswith .pub and not proc.name in (ssh, sshd, ssh-agent, ssh-add, ssh-keygen, ssh-keysign, scp, sftp, git, rsync) and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) read the SSH private key %fd.name; parent %proc.pname"
  priority: warning
  tags: [T1552.004, credential_access]

# --- Persistence and privilege escalation through configuration -------------

- rule: Write to sudoers
  desc: sudoers or a file under /etc/sudoers.d opened for writing by something other than visudo or a package manager.
  condition: open_write and (fd.name = /etc/sudoers or fd.name startswith /etc/sudoers.d/) and not proc.name in (visudo) and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: critical
  tags: [T1548.003, privilege_escalation, persistence]

- rule: Write to ld.so.preload
  desc: /etc/ld.so.preload opened for writing, so every dynamically linked program would load the listed library.
  condition: open_write and fd.name = /etc/ld.so.preload and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: critical
  tags: [T1574.006, persistence, defense_evasion]

- rule: Modify PAM configuration
  desc: A PAM configuration file or module opened for writing outside a package manager.
  condition: open_write and (fd.name startswith /etc/pam.d/ or fd.name = /etc/pam.conf or fd.name glob "/*/security/pam_*.so") and not proc.name in (package_managers) and not proc.name in (pam-auth-update)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: critical
  tags: [T1556.003, persistence, credential_access]

- rule: Write to cron
  desc: A crontab or cron directory file opened for writing by something other than crontab or a package manager.
  condition: open_write and (fd.name = /etc/crontab or fd.name startswith /etc/cron. or fd.name startswith /var/spool/cron/) and not proc.name in (crontab, cron, crond) and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: warning
  tags: [T1053.003, persistence]

- rule: Write to SSH authorized keys
  desc: An authorized_keys file opened for writing by something other than ssh-copy-id's shell or a provisioning agent.
  condition: open_write and (fd.name endswith /.ssh/authorized_keys or fd.name endswith /.ssh/authorized_keys2) and not proc.name in (cloud-init, google_guest_ag, waagent)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: warning
  tags: [T1098.004, persistence]

- rule: Write to password database
  desc: /etc/passwd, /etc/shadow or /etc/group opened for writing by something other than the account tools.
  condition: open_write and fd.name in (/etc/passwd, /etc/shadow, /etc/group, /etc/gshadow) and not proc.name in (credential_readers) and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: critical
  tags: [T1098, T1136.001, persistence]

# --- Execution -----------------------------------------------------------------

- rule: Fileless execution
  desc: A program executed from a file descriptor (memfd_create and fexecve, or /proc/self/fd), so no file on disk holds it.
  condition: evt.type = exec and (proc.exe startswith /dev/fd/ or proc.exe startswith /proc/self/fd/ or proc.exe glob "/proc/*/fd/*" or proc.exe startswith "memfd:")
  output: "%proc.name executed %proc.exe (%proc.cmdline) from memory; parent %proc.pname (%proc.pexe)"
  priority: critical
  tags: [T1620, defense_evasion]

- rule: Dropped executable run
  desc: A file written, created or made executable (chmod +x), then executed within an hour by the same lineage (the writer, its parent or their descendants), outside a build. The latest write or chmod before the exec is the first step.
  sequence:
    within: 1h
    by: lineage
    steps:
      - condition: evt.type in (open, rename, chmod_exec) and not evt.failed
        key: fd.written
      - condition: evt.type = exec and not proc.aname in (build_tools) and not proc.pname in (package_managers)
        key: proc.exe
  output: "%proc.name executed %proc.exe (%proc.cmdline), a file its lineage wrote or made executable; parent %proc.pname"
  priority: warning
  tags: [T1105, command_and_control]

- rule: Shell spawned by a network service
  desc: A web, database or other network server started a shell or an interpreter.
  condition: evt.type = exec and (proc.name in (shell_binaries) or proc.name in (interpreter_binaries)) and proc.pname in (network_service_binaries)
  output: "%proc.pname (%proc.pexe) started %proc.name (%proc.cmdline)"
  priority: critical
  tags: [T1059.004, T1190, execution]

- rule: Shell connected out
  desc: A shell opened a TCP connection itself (bash's /dev/tcp), the classic reverse-shell one-liner.
  condition: evt.type = connect and shell_procs
  output: "%proc.name (%proc.cmdline) connected to %net.dip:%net.dport; parent %proc.pname"
  priority: critical
  tags: [T1059.004, T1071, execution, command_and_control]

# --- Privilege escalation and injection ----------------------------------------

- rule: Write to another process's memory file
  desc: /proc/PID/mem of another process opened for writing (code injection without ptrace).
  condition: open_write and fd.name glob "/proc/*/mem" and not fd.name startswith /proc/self/ and not proc.name in (debuggers)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: critical
  tags: [T1055.009, defense_evasion, privilege_escalation]

- rule: Container escape through a kernel callback
  desc: core_pattern or a cgroup release_agent opened for writing, which makes the kernel run a program of the writer's choosing as root.
  condition: open_write and (fd.name = /proc/sys/kernel/core_pattern or fd.name endswith /release_agent) and not proc.name in (systemd, systemd-coredump, apport, abrt-hook-ccpp) and not proc.name in (package_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) opened %fd.name for writing; parent %proc.pname"
  priority: critical
  tags: [T1611, privilege_escalation]

- rule: Setuid to root by a non-root process
  desc: A process whose real uid was not root made itself root with a setuid-family call, and is not a known setuid program.
  condition: evt.type = setid and not evt.failed and user.old_uid != 0 and user.uid = 0 and not proc.exe in (known_setuid_programs)
  output: "%proc.name (%proc.exe) changed uid %user.old_uid -> %user.uid (euid %user.old_euid -> %user.euid); parent %proc.pname"
  priority: critical
  tags: [T1548.001, privilege_escalation]

- rule: Ptrace attach to another process
  desc: PTRACE_ATTACH or PTRACE_SEIZE by a program that is not a debugger.
  condition: evt.type = ptrace and ptrace.request in (16, 0x4206) and not evt.failed and not proc.name in (debuggers)
  output: "%proc.name (%proc.exe, uid %user.uid) attached to %target.name[%target.pid] with ptrace request %ptrace.request"
  priority: warning
  tags: [T1055.008, defense_evasion, privilege_escalation]

- rule: Ptrace code injection
  desc: PTRACE_POKETEXT, POKEDATA or POKEUSER (writing another process's memory or registers) by a program that is not a debugger.
  condition: evt.type = ptrace and ptrace.request in (4, 5, 6) and not evt.failed and not proc.name in (debuggers)
  output: "%proc.name (%proc.exe) wrote into %target.name[%target.pid] with ptrace request %ptrace.request"
  priority: critical
  tags: [T1055.008, defense_evasion, privilege_escalation]

- rule: Write to another process's memory
  desc: process_vm_writev into another process.
  condition: evt.type = process_vm_writev and not evt.failed and not target.is_self and not proc.name in (debuggers)
  output: "%proc.name (%proc.exe) wrote into the memory of %target.name[%target.pid]"
  priority: critical
  tags: [T1055, defense_evasion, privilege_escalation]

- rule: Kernel module loaded
  desc: A kernel module loaded by a program that is not a module loader.
  condition: evt.type = init_module and not evt.failed and not proc.name in (module_loaders)
  output: "%proc.name (%proc.exe, uid %user.uid) loaded a kernel module; parent %proc.pname"
  priority: critical
  tags: [T1547.006, persistence, privilege_escalation]

- rule: BPF program loaded by an unexpected process
  desc: bpf(BPF_PROG_LOAD) by a program not known to load BPF.
  condition: evt.type = bpf and bpf.cmd = 5 and not evt.failed and not proc.name in (bpf_loaders)
  output: "%proc.name (%proc.exe, uid %user.uid) loaded a BPF program; parent %proc.pname"
  priority: warning
  tags: [T1014, defense_evasion]

# --- Reverse shells ---------------------------------------------------------

- list: inet_daemons
  items: [inetd, xinetd, systemd, tcpserver, s6-tcpserver, socat]

- rule: Reverse shell
  desc: A shell or interpreter started with its stdin or stdout on a TCP/IP socket (nc -e, socat exec, bash /dev/tcp, python pty.spawn after dup2), outside an inetd-style launcher.
  condition: evt.type = exec and (proc.name in (shell_binaries) or proc.name in (interpreter_binaries)) and (proc.stdin_type in (ipv4, ipv6) or proc.stdout_type in (ipv4, ipv6)) and not proc.pname in (inet_daemons)
  output: "%proc.name (%proc.cmdline) started with stdin %proc.stdin_type, stdout %proc.stdout_type; parent %proc.pname (%proc.pcmdline)"
  priority: critical
  tags: [T1059.004, T1071, execution, command_and_control]

- rule: Stdio redirected to a network socket
  desc: A process duplicated a TCP/IP socket onto its stdin, stdout or stderr (the step before exec in most reverse shells), outside an inetd-style launcher.
  condition: evt.type = dup_stdio and not evt.failed and fd.type in (ipv4, ipv6) and not proc.name in (inet_daemons)
  output: "%proc.name (%proc.cmdline) duplicated fd %dup.oldfd (%fd.type socket) onto fd %dup.newfd; parent %proc.pname"
  priority: warning
  tags: [T1059, execution]

# --- Discovery: rules over many events (aggregate) -----------------------------

- rule: Port scan
  desc: One process had connections refused on many distinct ports within a short window (a connect scan; Falco cannot express this).
  condition: evt.type = refused
  aggregate:
    by: [proc.exec_id]
    distinct: net.dport
    count: 20
    window: 10s
  output: "%proc.name (%proc.cmdline) was refused on %agg.count ports of %net.dip within 10s: %agg.values"
  priority: warning
  tags: [T1046, discovery]

- rule: Connect sweep
  desc: One process had connections refused by many distinct hosts within a short window (a host sweep).
  condition: evt.type = refused
  aggregate:
    by: [proc.exec_id]
    distinct: net.dip
    count: 20
    window: 10s
  output: "%proc.name (%proc.cmdline) was refused by %agg.count hosts within 10s: %agg.values"
  priority: warning
  tags: [T1046, discovery]

- rule: Beaconing
  desc: One process connected to the same remote address and port at a regular period (gaps within 10% of their mean, at least 1 s apart), the pattern of a command-and-control implant polling home. Loopback is left out; monitoring agents that push on a timer look the same and belong in an exception.
  condition: evt.type = connect and not net.dip startswith 127. and not net.dip = "0:0:0:0:0:0:0:1"
  aggregate:
    by: [proc.exec_id, net.dip, net.dport]
    count: 8
    window: 1h
    regular: 0.1
  output: "%proc.name (%proc.cmdline) connected to %net.dip:%net.dport %agg.count times at a regular period"
  priority: notice
  tags: [T1071, command_and_control]

# --- Exfiltration (net_bytes: bytes per connection, summarized in the kernel) ---

# Programs whose job is pushing bulk data to another host (copies, backups,
# sync, replication, image registries, log shippers). Their uploads, and
# those of their children (scp and rsync run ssh), are their work. Names as
# comm shows them: at most 15 bytes.
- list: bulk_transfer_tools
  items: [scp, sftp, rsync, rclone, restic, borg, duplicity, rsnapshot, bacula-fd, bareos-fd, aws, gsutil, azcopy, s3cmd, git, git-remote-http, docker, dockerd, containerd, podman, skopeo, buildah, pg_basebackup, pg_receivewal, postgres, mysqld, mariadbd, mongod, redis-server, etcd, filebeat, fluent-bit, fluentd, vector, promtail, otelcol, otelcol-contrib, telegraf, prometheus, datadog-agent, rsyslogd, syslog-ng, systemd-journal]

# Remote addresses uploads may go to (a backup server, a log collector), as
# net.dip shows them. Empty: every destination is judged, loopback included.
# To leave out whole networks, change the macro, e.g. to
# `net.dip in (exfiltration_trusted_hosts) or net.dip startswith 10. or net.dip startswith 127.`
- list: exfiltration_trusted_hosts
  items: []

- macro: exfiltration_trusted_destination
  condition: net.dip in (exfiltration_trusted_hosts)

- rule: Exfiltration
  desc: A process that is not a bulk transfer tool sent at least 20 MB to one remote address over the connections it opened, and at least 10 times what it received from there (an upload, not a conversation or a download). The thresholds are the two literals; connections the process accepted (a server's) do not count.
  condition: evt.type = net_bytes and net.host_sent >= 20000000 and net.host_send_ratio >= 10 and not proc.name in (bulk_transfer_tools) and not proc.pname in (bulk_transfer_tools) and not exfiltration_trusted_destination
  output: "%proc.name (%proc.cmdline) sent %net.host_sent bytes to %net.dip and received %net.host_received (connection to port %net.dport: %net.bytes_sent sent); parent %proc.pname"
  priority: warning
  tags: [T1041, T1048, exfiltration]

# --- Capabilities -------------------------------------------------------------

# Container runtimes set up a container's capability sets.
- list: capability_managers
  items: [runc, crun, conmon, containerd-shim, youki]

- rule: Capabilities added with capset
  desc: capset(2) left the process holding a capability it held in no set before the call (cap.added). Through capset only a CAP_SETPCAP holder can, by putting bounding-set capabilities into its inheritable set for a program it executes; a kernel exploit rewriting the credentials between the call's entry and exit shows the same way. Re-raising a capability still permitted (ping, a capability-aware daemon) is not adding.
  condition: evt.type = capset and not evt.failed and cap.added != 0 and not proc.name in (capability_managers)
  output: "%proc.name (%proc.exe, uid %user.uid) added %cap.added_names with capset (effective raised: %cap.raised_names); parent %proc.pname"
  priority: critical
  tags: [T1548, T1068, privilege_escalation]

"""#
}
