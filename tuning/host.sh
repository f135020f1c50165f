#!/usr/bin/env bash
# Host settings for PairDB on bare-metal Linux (io_uring, one executor per core).
#
#   tuning/host.sh            show each setting: what it does, its current and wanted value, and
#                             the command that checks it (changes nothing; no root needed)
#   sudo tuning/host.sh --apply [--irq-cpus 0-1] [--user pairdb]
#                             apply them; idempotent (files are rewritten only when their content
#                             differs, sysctls only set when different), and says what changed
#
# Persistent files it writes with --apply:
#   /etc/sysctl.d/60-pairdb.conf          kernel network settings (reloaded with sysctl --system)
#   /etc/security/limits.d/60-pairdb.conf locked-memory limit for PAM logins of --user
# Not persistent (lost at reboot; put them in your provisioning): the CPU governor and IRQ
# affinity. Core isolation needs the kernel command line; the script prints what to add.
# See tuning/README.md for the reasons behind each value.
set -euo pipefail

APPLY=0
IRQ_CPUS=""
RUN_USER="pairdb"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --apply) APPLY=1 ;;
        --check) APPLY=0 ;;
        --irq-cpus) IRQ_CPUS="$2"; shift ;;
        --user) RUN_USER="$2"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ $APPLY == 1 && $EUID != 0 ]]; then
    echo "--apply needs root" >&2
    exit 1
fi

changed=0
say() { printf '%s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }

# Writes $2 to file $1 unless it already holds exactly that.
write_file() {
    local path="$1" content="$2"
    if [[ -f $path && "$(cat "$path")" == "$content" ]]; then
        say "   unchanged: $path"
        return
    fi
    if [[ $APPLY == 1 ]]; then
        mkdir -p "$(dirname "$path")"
        printf '%s\n' "$content" >"$path"
        say "   WROTE: $path"
        changed=1
    else
        say "   would write: $path"
    fi
}

# sysctl KEY WANTED WHY: shows current vs wanted, sets it with --apply.
SYSCTL_LINES=""
tune_sysctl() {
    local key="$1" want="$2" why="$3"
    local file="/proc/sys/${key//.//}"
    local have="(absent)"
    [[ -r $file ]] && have="$(tr -s '\t ' ' ' <"$file")"
    say " - $key: $why"
    say "   current: $have   wanted: $(tr -s '\t' ' ' <<<"$want") or more   check: sysctl $key"
    # A value already at least as large (every field) is kept: this script never lowers one.
    local -a h w
    read -r -a h <<<"$have"
    read -r -a w <<<"$want"
    local enough=1 i
    for i in "${!w[@]}"; do
        [[ ${h[i]:-} =~ ^[0-9]+$ && ${h[i]} -ge ${w[i]} ]] || enough=0
    done
    if [[ $enough == 1 ]]; then
        SYSCTL_LINES+="$key = $have"$'\n'
        return
    fi
    SYSCTL_LINES+="$key = $want"$'\n'
    if [[ $APPLY == 1 && -w $file ]]; then
        sysctl -q -w "$key=$want" && say "   SET: $key = $want" && changed=1
    fi
}

section "Locked memory (RLIMIT_MEMLOCK)"
say " - io_uring rings and the 1 MiB of registered buffers per executor are locked memory; a"
say "   limit too low fails the start with glommio's MemLockLimit error."
say "   current (this shell): $(ulimit -l) KiB   wanted: unlimited (at least 64 MiB)"
say "   check: ulimit -l (as the service user), or grep 'locked memory' /proc/\$(pgrep -n pairdb)/limits"
write_file /etc/security/limits.d/60-pairdb.conf "# PairDB: io_uring locked memory (tuning/host.sh)
$RUN_USER soft memlock unlimited
$RUN_USER hard memlock unlimited"
say "   systemd ignores limits.d: put LimitMEMLOCK=infinity in the unit; Docker: --ulimit memlock=-1;"
say "   Kubernetes: CAP_IPC_LOCK (k8s/)."

section "Network (sysctl)"
tune_sysctl net.core.somaxconn 4096 \
    "accept-queue length per listening socket; each core has its own SO_REUSEPORT listener, and a connection burst beyond the queue is dropped (SYN retried after 1 s)"
tune_sysctl net.ipv4.tcp_max_syn_backlog 8192 \
    "half-open connections kept during a burst of new clients"
tune_sysctl net.core.rmem_max 16777216 \
    "largest receive buffer a socket may have (16 MiB): lets TCP autotuning grow a 4 MiB message's window on high-latency links"
tune_sysctl net.core.wmem_max 16777216 "largest send buffer a socket may have (16 MiB)"
tune_sysctl net.ipv4.tcp_rmem "4096	131072	16777216" \
    "TCP receive buffer min/default/max: 128 KiB default suits small requests, autotuning up to 16 MiB"
tune_sysctl net.ipv4.tcp_wmem "4096	65536	16777216" "TCP send buffer min/default/max"
tune_sysctl net.core.busy_poll 50 \
    "microseconds poll()/epoll spin on the NIC queue before sleeping: lower latency on a real NIC at the cost of CPU; no effect on loopback"
tune_sysctl net.core.busy_read 50 "the same for blocking reads"
# tab-separated values are written as the kernel prints them
write_file /etc/sysctl.d/60-pairdb.conf "# PairDB network settings (tuning/host.sh; reasons in tuning/README.md)
${SYSCTL_LINES%$'\n'}"

section "CPU frequency governor"
say " - 'performance' keeps cores at full clock: a core that idles between requests otherwise"
say "   clocks down and the next request pays the ramp-up."
say "   check: cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor | sort | uniq -c"
govs=(/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
if [[ -e ${govs[0]} ]]; then
    say "   current: $(cat "${govs[@]}" | sort | uniq -c | tr -s ' ' | tr '\n' ';')   wanted: performance"
    if [[ $APPLY == 1 ]]; then
        for g in "${govs[@]}"; do
            if [[ $(cat "$g") != performance ]]; then
                echo performance >"$g" && changed=1
            fi
        done
        say "   governor: performance on every CPU (not persistent: use cpupower or tuned at boot)"
    fi
else
    say "   no cpufreq on this machine (VM or container): nothing to do"
fi

section "IRQ affinity and core isolation"
say " - Network interrupts on the cores that run PairDB executors steal time from requests. Keep"
say "   one or two housekeeping CPUs for IRQs (and irqbalance off), and the rest for PairDB."
say "   check: grep -E 'eth|mlx|ens|virtio' /proc/interrupts; cat /proc/irq/*/smp_affinity_list"
if [[ -n $IRQ_CPUS ]]; then
    for irq in /proc/irq/[0-9]*; do
        [[ -w $irq/smp_affinity_list ]] || continue
        if [[ $(cat "$irq/smp_affinity_list") != "$IRQ_CPUS" ]]; then
            if [[ $APPLY == 1 ]]; then
                echo "$IRQ_CPUS" >"$irq/smp_affinity_list" 2>/dev/null && changed=1 || true
            fi
        fi
    done
    if [[ $APPLY == 1 ]]; then
        say "   IRQs pinned to CPUs $IRQ_CPUS where the kernel allows; stop irqbalance"
        say "   (systemctl disable --now irqbalance) or it moves them back."
    else
        say "   would pin IRQs to CPUs $IRQ_CPUS"
    fi
fi
say " - Core isolation needs the kernel command line, e.g. for PairDB on CPUs 2-15:"
say "     isolcpus=managed_irq,domain,2-15 nohz_full=2-15 rcu_nocbs=2-15"
say "   check: cat /proc/cmdline; cat /sys/devices/system/cpu/isolated"
say " - Then give PairDB exactly those CPUs and as many executors:"
say "     taskset -c 2-15 pairdb coordinator --cores 14 ...   (cores: 14 in the config)"
say "   PairDB pins one executor per CPU of its affinity mask; check: ps -L -o tid,psr,comm -p \$(pgrep -n pairdb)"

if [[ $APPLY == 1 && $changed == 1 && -d /etc/sysctl.d ]]; then
    sysctl -q --system >/dev/null 2>&1 || true
fi
section "Summary"
if [[ $APPLY == 1 ]]; then
    [[ $changed == 1 ]] && say "changes applied (see above)" || say "nothing to change: the host was already tuned"
else
    say "check mode: nothing changed; run with sudo and --apply to apply"
fi
