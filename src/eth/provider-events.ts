// The event half of an EIP-1193 provider (on / removeListener / emit), shared
// by the in-process provider and the browser's worker provider. Browser-safe.
export type ProviderListener = (...args: unknown[]) => void;

export interface ProviderEvents<P> {
  emit(event: string, ...args: unknown[]): void;
  on(event: string, listener: ProviderListener): P;
  removeListener(event: string, listener: ProviderListener): P;
}

/** `self()` is the provider, returned by on/removeListener for chaining. */
export function providerEvents<P>(self: () => P): ProviderEvents<P> {
  const listeners = new Map<string, Set<ProviderListener>>();
  return {
    emit(event, ...args) {
      for (const l of listeners.get(event) ?? []) {
        try {
          l(...args);
        } catch {
          // a listener's error is its own
        }
      }
    },
    on(event, listener) {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(listener);
      return self();
    },
    removeListener(event, listener) {
      listeners.get(event)?.delete(listener);
      return self();
    },
  };
}
