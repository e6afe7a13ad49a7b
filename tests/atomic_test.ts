// Whole-directory writes and what a crash between their two renames leaves behind.
import { assert, assertEquals } from "./assert.ts";
import { isWithin, pathExists } from "../lib/io/paths.ts";
import { writeDirAtomic } from "../lib/io/atomic.ts";
import { findCheckpoint } from "../lib/train/checkpoint.ts";
import { folderNames, withTempDir } from "./train_helpers.ts";

Deno.test("writeDirAtomic replaces a directory whole, keeps what `keep` names, and clears a crash's leftovers", async () => {
  await withTempDir("hartley_atomic_", async (dir) => {
    const target = `${dir}/ckpt`;
    await writeDirAtomic(target, (tmp) => Deno.writeTextFile(`${tmp}/a`, "1"));
    // a crash between the renames left the old folder and the finished new one aside; others are not ours
    for (
      const d of [".ckpt.0123abcd.old", ".ckpt.89abcdef.tmp", ".ckpt-best.0123abcd.old", ".ckpt.notanid.old"]
    ) {
      await Deno.mkdir(`${dir}/${d}`);
    }
    await writeDirAtomic(target, async (tmp) => {
      await Deno.writeTextFile(`${tmp}/b`, "2");
    }, { keep: (name) => name === "a" });
    assertEquals(await folderNames(target), ["a", "b"]);
    assertEquals(await folderNames(dir), [".ckpt-best.0123abcd.old", ".ckpt.notanid.old", "ckpt"]);
    // a kept name the new folder has too: the new file wins
    await writeDirAtomic(target, (tmp) => Deno.writeTextFile(`${tmp}/a`, "new"), { keep: () => true });
    assertEquals([await folderNames(target), await Deno.readTextFile(`${target}/a`)], [["a", "b"], "new"]);
    await writeDirAtomic(target, (tmp) => Deno.writeTextFile(`${tmp}/a`, "1"));
    await Deno.remove(`${target}/b`).catch(() => {});
    await writeDirAtomic(target, (tmp) => Deno.writeTextFile(`${tmp}/b`, "2"), {
      keep: (name) => name === "a",
    });
    // a failing fill leaves the directory as it was
    const failed = await writeDirAtomic(target, () => Promise.reject(new Error("no"))).catch((e) => e);
    assert(failed instanceof Error && failed.message === "no");
    assertEquals(await folderNames(target), ["a", "b"]);
    assertEquals(await folderNames(dir), [".ckpt-best.0123abcd.old", ".ckpt.notanid.old", "ckpt"]);
  });
});

Deno.test("writeDirAtomic: a failed write removes the folders it made for the target, and no others", async () => {
  await withTempDir("hartley_atomic_", async (dir) => {
    await Deno.mkdir(`${dir}/kept`);
    const failed = await writeDirAtomic(`${dir}/kept/new/deeper/out`, () => Promise.reject(new Error("no")))
      .catch((e) => e);
    assert(failed instanceof Error && failed.message === "no");
    assertEquals(await folderNames(dir), ["kept"]);
    assertEquals(await folderNames(`${dir}/kept`), []);
    // a link to no folder is the user's, not a folder the write made: the failed write keeps it
    await Deno.symlink(`${dir}/gone`, `${dir}/kept/link`);
    const refused = await writeDirAtomic(`${dir}/kept/link/out`, async () => {}).catch((e) => e);
    assert(refused instanceof Error, "mkdir through a dangling link fails");
    assertEquals(await folderNames(`${dir}/kept`), ["link"]);
  });
});

Deno.test("findCheckpoint: checkpoint/, else the latest of those a crash left aside", async () => {
  await withTempDir("hartley_find_", async (dir) => {
    assertEquals(await findCheckpoint(dir), null);
    const state = (step: number) => JSON.stringify({ step });
    // set aside as writeDirAtomic names them: .checkpoint.<8 hex digits>.old
    for (const [id, step] of [["0000000a", 9], ["0000000b", 12], ["0000000c", 5]] as const) {
      await Deno.mkdir(`${dir}/.checkpoint.${id}.old`);
      await Deno.writeTextFile(`${dir}/.checkpoint.${id}.old/trainer_state.json`, state(step));
    }
    await Deno.mkdir(`${dir}/.checkpoint.0000000d.old`); // no state: not a checkpoint
    assertEquals(await findCheckpoint(dir), `${dir}/.checkpoint.0000000b.old`);
    await Deno.mkdir(`${dir}/checkpoint`);
    await Deno.writeTextFile(`${dir}/checkpoint/trainer_state.json`, state(3));
    assertEquals(await findCheckpoint(dir), `${dir}/checkpoint`);
  });
});

Deno.test("writeDirAtomic never replaces a folder holding the working directory; isWithin tells", async () => {
  await withTempDir("hartley_cwd_", async (dir) => {
    await Deno.mkdir(`${dir}/inner`);
    // from a subprocess started in dir/inner: the working folder is the process's, which `deno test
    // --parallel` shares between test files
    const script = `
      import { writeDirAtomic } from ${JSON.stringify(import.meta.resolve("../lib/io/atomic.ts"))};
      for (const target of [${JSON.stringify(dir)}, "."]) {
        console.log(await writeDirAtomic(target, async () => {}).then(() => "written", (e) => e.message));
      }`;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      cwd: `${dir}/inner`,
    })
      .output();
    const told = new TextDecoder().decode(r.stdout).trim().split("\n");
    assertEquals(told.length, 2, new TextDecoder().decode(r.stderr));
    for (const line of told) {
      assert(line.endsWith("would remove the working directory, which lies within it"), line);
    }
    assert(await pathExists(`${dir}/inner`), "kept");
  });
  assert(isWithin("/a/b/c", "/a/b") && isWithin("/a/b", "/a/b/") && isWithin("a/../b", "b"));
  // through a link: the folder it points at holds what lies under the link
  await withTempDir("hartley_link_", async (dir) => {
    await Deno.mkdir(`${dir}/model`);
    await Deno.symlink(`${dir}/model`, `${dir}/link`);
    assert(isWithin(`${dir}/link`, `${dir}/model`) && isWithin(`${dir}/link/new/x`, `${dir}/model`));
    assert(isWithin(`${dir}/model`, `${dir}/link`) && !isWithin(`${dir}/model`, `${dir}/other`));
  });
  assert(!isWithin("/a/bc", "/a/b") && !isWithin("/a", "/a/b") && !isWithin("/a/..b", "/a/b"));
});

Deno.test("writeDirAtomic through a link to a folder replaces the folder's contents and keeps the link", async () => {
  await withTempDir("hartley_atomic_link_", async (dir) => {
    await Deno.mkdir(`${dir}/real`);
    await Deno.writeTextFile(`${dir}/real/old`, "old");
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    await writeDirAtomic(`${dir}/link`, (tmp) => Deno.writeTextFile(`${tmp}/new`, "new"));
    assert((await Deno.lstat(`${dir}/link`)).isSymlink, "the link stays a link");
    assertEquals(await folderNames(`${dir}/real`), ["new"]);
    assertEquals(await folderNames(dir), ["link", "real"]);
  });
});
