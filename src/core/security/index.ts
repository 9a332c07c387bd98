/** Abuse resistance: brute-force guard, flood limit, destination filter, and the address matching they share. */
export { BruteForceGuard, type BanCheck, type BanVerdict, type BruteForceGuardOptions, type BruteForceStats } from './brute-force-guard.js';
export { FloodLimiter, type FloodDecision, type FloodStats } from './flood-limiter.js';
export {
  DestinationFilter,
  FILTERED_DESTINATION_REASON,
  FILTERED_DESTINATION_STATUS,
  type DestinationCaller,
  type DestinationFilterStats,
  type DestinationTransport,
  type DestinationVerdict,
} from './destination-filter.js';
export { canonicalBanValue, userKey, type BanReader, type BanView } from './ban-values.js';
export {
  DEFAULT_BRUTE_FORCE,
  DEFAULT_COUNTED_CAUSES,
  DEFAULT_FLOOD,
  DEFAULT_SECURITY,
  SecurityConfigError,
  securityConfigFrom,
  type BanAction,
  type BruteForceConfig,
  type DestinationFilterConfig,
  type FloodConfig,
  type NatConfig,
  type ProtectedDestinationConfig,
  type SecurityConfig,
  type SecurityConfigInput,
  type SecurityConfigProblem,
  type ThresholdConfig,
} from './config.js';
export { CidrList, canonicalIp, cidrContains, formatCidr, formatIp, isIp, parseCidr, parseIp, type Cidr, type IpAddress, type IpFamily } from './ip.js';
export { FOREVER, handleBansRequest, manualBanAdded, manualBanRemoved, parseDuration, type BanAdminDeps, type BanAdminResponse, type ManualBan } from './ban-admin.js';
export { BoundedMap } from './bounded-map.js';
