export { normalizeAddress, parseCidr, subscriberKey, AddressSet, type Cidr } from './address.js';
export { clientAddress, type ClientAddress, type ForwardedHeader } from './client-address.js';
export { NetworkPolicy, parseRule, ruleProblem, MAX_RULES, type ListenerKind, type NetworkRule, type Verdict } from './policy.js';
export { DeniedEvents, installNetworkGuard, markSocket } from './guard.js';
export { prepareListeners, type ExtraListeners } from './listeners.js';
export { MIN_TLS_VERSION, TlsReloader, readTlsFiles, serverTlsOptions, type SecureServer, type TlsFiles, type TlsSource } from './tls.js';
export { UrlSigner, readUrlSecret, type Signature, type SignedUrlOptions } from './signed-urls.js';
export { ClientIdentities, clientIdentityProblem, parseClientIdentity, type ClientIdentity } from './client-certs.js';
export { GeoDatabase, UNKNOWN_COUNTRY } from './geo.js';
