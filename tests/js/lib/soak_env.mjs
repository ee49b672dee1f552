// Server settings of the memory soak: rate limits and per-client caps out of the way of its load
// (they have their own tests; polling clients cannot pick a source address, so hundreds of
// handshakes a second come from 127.0.0.1), everything else the defaults an operator runs.
export const SOAK_ENV = {
  SWITCHYARD_MAX_CONNECTIONS_PER_IP: '20000',
  SWITCHYARD_RATE_CONN: '100000',
  SWITCHYARD_RATE_CONN_BURST: '100000',
  SWITCHYARD_RATE_IP: '100000',
  SWITCHYARD_RATE_IP_BURST: '100000',
  SWITCHYARD_RATE_CONNECT: '100000',
  SWITCHYARD_RATE_CONNECT_BURST: '100000',
  SWITCHYARD_CHAT_REST_RATE_IP: '100000',
  SWITCHYARD_CHAT_REST_RATE_IP_BURST: '100000',
};
