/** A tiny typed event emitter (no dependency, works in browsers and Node). */

/** The emitting half, which the SDK's parts are given (each knows only its own events). */
export interface EventSink<Events> {
  emit<K extends keyof Events>(event: K, payload: Events[K]): void;
}

export class Emitter<Events extends Record<string, unknown>> implements EventSink<Events> {
  #listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => set!.delete(listener as (payload: never) => void);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        (listener as (payload: Events[K]) => void)(payload);
      } catch (err) {
        // A throwing listener must not break the sync loop that emitted the event.
        console.error(`or3 client: "${String(event)}" listener threw`, err);
      }
    }
  }
}
