import type { ClaimStore } from './claim-store';

/**
 * Puts one dead letter, or all of them, back into the outbox, each at most once. The
 * ids are read first: a revived order that Matomo refuses again lands back in the dead
 * letters while this runs, and must not be revived (and counted) a second time.
 */
export async function reviveDeadLetters(
  store: ClaimStore,
  target: string,
  now: () => number,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<number> {
  if (target !== 'all') return (await store.deadLetters.revive(target, now())) ? 1 : 0;
  const ids = (await store.deadLetters.list(await store.deadLetters.count())).map((letter) => letter.item.id);
  let revived = 0;
  for (const [index, id] of ids.entries()) {
    if (await store.deadLetters.revive(id, now())) revived++;
    onProgress(index + 1, ids.length);
  }
  return revived;
}
