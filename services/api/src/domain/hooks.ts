/**
 * What the API tells the rest of the platform. The platform's main wires these to
 * the deployer, the router's route feed and the build queue; API tests pass a
 * recorder.
 */
export interface PlatformHooks {
  /** Routing-relevant state changed: domains, maintenance, serverless settings. */
  appChanged(appId: string): void;
  /** A release was appended; roll it out start-first and record its outcome. */
  releaseCreated(appId: string, releaseId: string): void;
  /** Quantities or sizes changed for the current release. */
  formationChanged(appId: string): void;
  /** Restart dynos: all, one type (web), or one dyno (web.1). */
  restart(appId: string, which?: string): Promise<void>;
  /** The app is gone: stop everything it runs and drop its routes. */
  appDeleted(appId: string): void;
  /** A build was queued. */
  buildQueued(buildId: string): void;
}
