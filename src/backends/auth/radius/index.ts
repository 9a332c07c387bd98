export { createRadiusBackend, type RadiusBackend, type RadiusBackendOptions, type RadiusServerConfig, type RadiusStats, type RadiusServerHealth } from './backend.js';
export { RadiusClient, type RadiusClientOptions, type RadiusReply, type RadiusAttributeList } from './client.js';
export { parseSipAvp, type SipAvp } from './avp.js';
