/** The scenarios, in the order they run. */
import type { Scenario } from '../types.js';
import { authScenario } from './auth.js';
import { blobsScenario } from './blobs.js';
import { encryptionScenario } from './encryption.js';
import { gatewayScenario } from './gateway.js';
import { imagesScenario } from './images.js';
import { manifestsScenario } from './manifests.js';

export const SCENARIOS: readonly Scenario[] = [blobsScenario, manifestsScenario, imagesScenario, authScenario, encryptionScenario, gatewayScenario];
