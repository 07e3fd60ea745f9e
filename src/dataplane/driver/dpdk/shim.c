/*
 * rvs DPDK shim: out-of-line copies of DPDK's static inline functions
 * (see shim.h). Each one forwards to the DPDK function it names.
 */
#include "shim.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_flow.h>

uint16_t rvs_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                          struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t rvs_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                          struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void rvs_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

void *rvs_pktmbuf_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t rvs_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t rvs_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

int rvs_pktmbuf_rss_hash(const struct rte_mbuf *m, uint32_t *hash)
{
	if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) {
		*hash = m->hash.rss;
		return 1;
	}
	return 0;
}

unsigned rvs_lcore_id(void)
{
	return rte_lcore_id();
}

unsigned rvs_socket_id(void)
{
	return rte_socket_id();
}

int rvs_errno(void)
{
	return rte_errno;
}

uint64_t rvs_eth_rss_ip_tcp_udp(void)
{
	return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
}

uint64_t rvs_eth_rx_offload_rss_hash(void)
{
	return RTE_ETH_RX_OFFLOAD_RSS_HASH;
}

uint64_t rvs_eth_tx_offload_l3l4_csum(void)
{
	return RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM |
	       RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
}

uint64_t rvs_eth_tx_offload_mbuf_fast_free(void)
{
	return RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
}

static void copy_flow_error(const struct rte_flow_error *err, int ret,
                            char *errbuf, size_t errbuf_len)
{
	if (errbuf == NULL || errbuf_len == 0)
		return;
	snprintf(errbuf, errbuf_len, "%s (type %d, %s)",
	         err->message ? err->message : "no message", (int)err->type,
	         strerror(-ret));
}

int rvs_flow_fullnat(uint16_t port_id, int family, const uint8_t *lip,
                     uint8_t l4proto, uint16_t lport_mask,
                     uint16_t lport_value, uint16_t queue, int validate_only,
                     struct rte_flow **flow_out, char *errbuf,
                     size_t errbuf_len)
{
	struct rte_flow_attr attr;
	struct rte_flow_item pattern[4];
	struct rte_flow_action actions[2];
	struct rte_flow_action_queue queue_conf;
	struct rte_flow_item_ipv4 ip4_spec, ip4_mask;
	struct rte_flow_item_ipv6 ip6_spec, ip6_mask;
	struct rte_flow_item_tcp tcp_spec, tcp_mask;
	struct rte_flow_item_udp udp_spec, udp_mask;
	struct rte_flow_error err;
	int ret;

	memset(&attr, 0, sizeof(attr));
	memset(pattern, 0, sizeof(pattern));
	memset(actions, 0, sizeof(actions));
	memset(&queue_conf, 0, sizeof(queue_conf));
	memset(&ip4_spec, 0, sizeof(ip4_spec));
	memset(&ip4_mask, 0, sizeof(ip4_mask));
	memset(&ip6_spec, 0, sizeof(ip6_spec));
	memset(&ip6_mask, 0, sizeof(ip6_mask));
	memset(&tcp_spec, 0, sizeof(tcp_spec));
	memset(&tcp_mask, 0, sizeof(tcp_mask));
	memset(&udp_spec, 0, sizeof(udp_spec));
	memset(&udp_mask, 0, sizeof(udp_mask));
	memset(&err, 0, sizeof(err));
	if (flow_out != NULL)
		*flow_out = NULL;

	attr.ingress = 1;
	pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
	if (family == 4) {
		memcpy(&ip4_spec.hdr.dst_addr, lip, 4);
		ip4_mask.hdr.dst_addr = UINT32_MAX;
		pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV4;
		pattern[1].spec = &ip4_spec;
		pattern[1].mask = &ip4_mask;
	} else if (family == 6) {
		memcpy(ip6_spec.hdr.dst_addr, lip, 16);
		memset(ip6_mask.hdr.dst_addr, 0xff, 16);
		pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV6;
		pattern[1].spec = &ip6_spec;
		pattern[1].mask = &ip6_mask;
	} else {
		if (errbuf != NULL && errbuf_len > 0)
			snprintf(errbuf, errbuf_len, "address family %d", family);
		return -EINVAL;
	}
	if (l4proto == IPPROTO_TCP) {
		tcp_spec.hdr.dst_port = rte_cpu_to_be_16(lport_value & lport_mask);
		tcp_mask.hdr.dst_port = rte_cpu_to_be_16(lport_mask);
		pattern[2].type = RTE_FLOW_ITEM_TYPE_TCP;
		pattern[2].spec = &tcp_spec;
		pattern[2].mask = &tcp_mask;
	} else if (l4proto == IPPROTO_UDP) {
		udp_spec.hdr.dst_port = rte_cpu_to_be_16(lport_value & lport_mask);
		udp_mask.hdr.dst_port = rte_cpu_to_be_16(lport_mask);
		pattern[2].type = RTE_FLOW_ITEM_TYPE_UDP;
		pattern[2].spec = &udp_spec;
		pattern[2].mask = &udp_mask;
	} else {
		if (errbuf != NULL && errbuf_len > 0)
			snprintf(errbuf, errbuf_len, "L4 protocol %u", l4proto);
		return -EINVAL;
	}
	pattern[3].type = RTE_FLOW_ITEM_TYPE_END;

	queue_conf.index = queue;
	actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
	actions[0].conf = &queue_conf;
	actions[1].type = RTE_FLOW_ACTION_TYPE_END;

	ret = rte_flow_validate(port_id, &attr, pattern, actions, &err);
	if (ret != 0) {
		copy_flow_error(&err, ret, errbuf, errbuf_len);
		return ret;
	}
	if (validate_only)
		return 0;
	struct rte_flow *flow =
		rte_flow_create(port_id, &attr, pattern, actions, &err);
	if (flow == NULL) {
		ret = rte_errno > 0 ? -rte_errno : -EIO;
		copy_flow_error(&err, ret, errbuf, errbuf_len);
		return ret;
	}
	if (flow_out != NULL)
		*flow_out = flow;
	return 0;
}

int rvs_flow_destroy(uint16_t port_id, struct rte_flow *flow, char *errbuf,
                     size_t errbuf_len)
{
	struct rte_flow_error err;
	int ret;

	memset(&err, 0, sizeof(err));
	ret = rte_flow_destroy(port_id, flow, &err);
	if (ret != 0)
		copy_flow_error(&err, ret, errbuf, errbuf_len);
	return ret;
}
