// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Outbound capture without NAT: the programs meshproxy-capture attaches to a pod's cgroup (v2).
// Where istio-iptables' REDIRECT rewrites every packet of a captured connection (and keeps
// conntrack on for all of them), these act once per connection:
//   connect4     an application's connect() to a captured IPv4 address goes to
//                127.0.0.1:outbound_port (meshproxy's virtualOutbound) instead; the address it
//                asked for is remembered by the socket's cookie;
//   sockops      once that connection is established, the address is filed under the client's
//                own address and port, which the proxy sees as its peer;
//   getsockopt   SO_ORIGINAL_DST on the proxy's accepted socket answers with that address, as
//                conntrack would after a REDIRECT;
//   getpeername4 the application's getpeername() answers with it too.
// Which connections are captured follows istio-iptables: every TCP destination in `cidrs`
// whose longest match says capture (0.0.0.0/0 by default, 127.0.0.0/8 left alone), except the
// proxy's own (its uid or gid).

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define SOL_IP 0
#define SO_ORIGINAL_DST 80

// Set by the loader before the programs are loaded.
const volatile __u32 proxy_uid = 1337;
const volatile __u32 proxy_gid = 1337;
const volatile __u32 outbound_port = 15001;  // host byte order

// An IPv4 address and port as connect() takes them (both in network byte order).
struct address {
  __u32 ip;
  __u32 port;
};

// A client socket, as its network namespace, its address and its port (network byte order).
struct client {
  __u64 netns;
  struct address local;
};

struct cidr {
  __u32 prefix_length;
  __u32 ip;
};

// The destination ranges: 1 captures, 0 leaves alone; the longest matching prefix decides.
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 256);
  __type(key, struct cidr);
  __type(value, __u8);
} cidrs SEC(".maps");

// Between connect() and the handshake's end: the original destination by socket cookie.
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, struct address);
} connecting SEC(".maps");

// Established captured connections: the original destination by client socket.
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct client);
  __type(value, struct address);
} captured SEC(".maps");

SEC("cgroup/connect4")
int mp_connect4(struct bpf_sock_addr *ctx) {
  if (ctx->protocol != IPPROTO_TCP) return 1;
  const __u64 uid_gid = bpf_get_current_uid_gid();
  if ((__u32)uid_gid == proxy_uid || (__u32)(uid_gid >> 32) == proxy_gid) return 1;
  struct cidr key = {32, ctx->user_ip4};
  const __u8 *capture = bpf_map_lookup_elem(&cidrs, &key);
  if (!capture || !*capture) return 1;
  struct address original = {ctx->user_ip4, ctx->user_port};
  __u64 cookie = bpf_get_socket_cookie(ctx);
  bpf_map_update_elem(&connecting, &cookie, &original, BPF_ANY);
  ctx->user_ip4 = bpf_htonl(0x7f000001);  // 127.0.0.1
  ctx->user_port = bpf_htons(outbound_port);
  return 1;
}

SEC("sockops")
int mp_sockops(struct bpf_sock_ops *ops) {
  if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || ops->family != AF_INET) return 1;
  // local_port is in host byte order, the others in network byte order.
  struct client key = {bpf_get_netns_cookie(ops), {ops->local_ip4, bpf_htons(ops->local_port)}};
  __u64 cookie = bpf_get_socket_cookie(ops);
  const struct address *original = bpf_map_lookup_elem(&connecting, &cookie);
  if (original) {
    bpf_map_update_elem(&captured, &key, original, BPF_ANY);
    bpf_map_delete_elem(&connecting, &cookie);
  } else {
    // The same address and port, earlier captured, now on a connection that is not.
    bpf_map_delete_elem(&captured, &key);
  }
  return 1;
}

SEC("cgroup/getsockopt")
int mp_getsockopt(struct bpf_sockopt *ctx) {
  if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST) return 1;
  struct bpf_sock *sk = ctx->sk;
  if (!sk || sk->family != AF_INET || sk->protocol != IPPROTO_TCP) return 1;
  // On the proxy's side the client's address is the peer's (dst_port: network byte order).
  struct client key = {bpf_get_netns_cookie(ctx), {sk->dst_ip4, sk->dst_port}};
  const struct address *original = bpf_map_lookup_elem(&captured, &key);
  if (!original) return 1;
  struct sockaddr_in *out = ctx->optval;
  if ((void *)(out + 1) > ctx->optval_end) return 1;
  out->sin_family = AF_INET;
  out->sin_port = original->port;
  out->sin_addr.s_addr = original->ip;
  ctx->optlen = sizeof(*out);
  // Two 4-byte stores: clang would merge them into one of 8, which the verifier refuses.
  asm volatile("" ::: "memory");
  ctx->retval = 0;
  return 1;
}

SEC("cgroup/getpeername4")
int mp_getpeername4(struct bpf_sock_addr *ctx) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk || sk->protocol != IPPROTO_TCP) return 1;
  // src_port is in host byte order.
  struct client key = {bpf_get_netns_cookie(ctx), {sk->src_ip4, bpf_htons(sk->src_port)}};
  const struct address *original = bpf_map_lookup_elem(&captured, &key);
  if (!original) return 1;
  ctx->user_ip4 = original->ip;
  ctx->user_port = original->port;
  return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
