/*
 * rvs DPDK shim: the DPDK headers bindgen reads, plus out-of-line wrappers
 * for the `static inline` functions and function-like macros Rust cannot
 * call directly. Compiled by the top-level build.rs (feature `dpdk`) with
 * the cflags `pkg-config --cflags libdpdk` gives.
 *
 * Rules: every wrapper is a thin forwarder with the same semantics as the
 * DPDK function it names (rvs_X wraps rte_X); nothing here allocates or
 * keeps state, except the rte_flow helper, which builds one rule.
 */
#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* ---- hot path: ethdev bursts and mbufs ---- */
uint16_t rvs_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                          struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rvs_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                          struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
void rvs_pktmbuf_free(struct rte_mbuf *m);
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
/* rte_pktmbuf_mtod(m, void *) */
void *rvs_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t rvs_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_tailroom(const struct rte_mbuf *m);
/* 1 and *hash set when the device gave an RSS hash, else 0. */
int rvs_pktmbuf_rss_hash(const struct rte_mbuf *m, uint32_t *hash);

/* ---- lcores and errors ---- */
unsigned rvs_lcore_id(void);
unsigned rvs_socket_id(void);
int rvs_errno(void);

/* ---- constants that are function-like macros (RTE_BIT64) ---- */
/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP */
uint64_t rvs_eth_rss_ip_tcp_udp(void);
uint64_t rvs_eth_rx_offload_rss_hash(void);
/* RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | _TCP_CKSUM | _UDP_CKSUM */
uint64_t rvs_eth_tx_offload_l3l4_csum(void);
uint64_t rvs_eth_tx_offload_mbuf_fast_free(void);

/* ---- rte_flow: one FULLNAT reply rule (DPVS sa_pool style) ----
 * Pattern ETH / IPV4 dst=lip (or IPV6 dst=lip) / TCP or UDP
 * dst_port & lport_mask == lport_value (host order), action QUEUE queue.
 * lip is 4 bytes (family 4) or 16 bytes (family 6), network order.
 * validate_only: only rte_flow_validate. On failure returns a negative
 * errno and copies the PMD's message into errbuf (NUL-terminated). */
struct rte_flow;
int rvs_flow_fullnat(uint16_t port_id, int family, const uint8_t *lip,
                     uint8_t l4proto, uint16_t lport_mask,
                     uint16_t lport_value, uint16_t queue, int validate_only,
                     struct rte_flow **flow_out, char *errbuf,
                     size_t errbuf_len);
int rvs_flow_destroy(uint16_t port_id, struct rte_flow *flow, char *errbuf,
                     size_t errbuf_len);

#endif /* RVS_DPDK_SHIM_H */
