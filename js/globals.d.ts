// Globals that TypeScript's libraries lack, for `npm run typecheck` (nothing here is bundled).

/** The bundled worklet.js as text, defined by js/build.mjs. */
declare const WORKLET_SOURCE: string;

// The AudioWorkletGlobalScope that worklet.js runs in (TypeScript ships no lib for it).
declare const sampleRate: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
}
declare function registerProcessor(name: string, processor: new () => AudioWorkletProcessor): void;

// document.permissionsPolicy (Chromium) and its older name featurePolicy; not in lib.dom.
interface PermissionsPolicy {
  allowsFeature(feature: string): boolean;
}
interface Document {
  readonly permissionsPolicy?: PermissionsPolicy;
  readonly featurePolicy?: PermissionsPolicy;
}
