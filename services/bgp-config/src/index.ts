export { birdView, bgpInputFrom, emptyInput, bgpKeyFilter, compareIp, DEFAULT_AS, BgpViewError } from './model.js';
export type { BgpInput, HostInput, BirdView, BirdPeer, PeerSpec, PeerType } from './model.js';
export { renderBirdConf, TEMPLATE_PATH } from './render.js';
export { birdPaths, checkConfig, installConfig, reloadBird, birdc, BirdConfigRejected } from './bird.js';
export type { BirdPaths } from './bird.js';
export { BgpConfigService } from './service.js';
export type { BgpConfigOptions, BgpConfigStatus } from './service.js';
export { loadConfig, USAGE } from './config.js';
